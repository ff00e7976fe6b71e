"""Tokenization: keyed HMAC-SHA256 tokens, key rings (0600, rotation), and no raw id after a load."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat

import pandas as pd
import pytest

from fedinsight.cli import main
from fedinsight.core.errors import KeyFileError
from fedinsight.privacy.keys import (
    generate_keyring,
    keyring_from_env,
    load_keyring,
    new_env_key,
    resolve_keyring,
    rotate_keyring,
)
from fedinsight.privacy.tokenize import Tokenizer


@pytest.fixture
def ring(tmp_path):
    return generate_keyring(tmp_path / "tok.key", "tokenization")


def test_token_is_hmac_sha256_of_namespace_and_value_under_the_partner_key(ring):
    expected = hmac.new(ring.active.secret, b"fedinsight/token/v1\x00customer_id\x00C042", hashlib.sha256)
    token = Tokenizer(ring).token(" C042 ")
    assert token == "tk_" + expected.hexdigest()[:32]


def test_tokens_are_stable_keyed_and_domain_separated(tmp_path, ring):
    tok = Tokenizer(ring)
    other = Tokenizer(generate_keyring(tmp_path / "other.key", "tokenization"))
    values = pd.Series(["a", "b", None, "a"], dtype="string")
    tokens = tok.tokenize(values)
    assert tokens[0] == tokens[3] != tokens[1] and pd.isna(tokens[2])
    assert tokens.dtype == "string" and all(t.startswith("tk_") and len(t) == 35 for t in tokens.dropna())
    assert tok.token("a") != other.token("a")  # another partner's key: unrelated tokens
    assert tok.token("a", "customer_id") != tok.token("a", "loyalty_card")


def test_collaboration_link_tokens_match_across_partners_while_partner_tokens_do_not(tmp_path):
    shared = generate_keyring(tmp_path / "collab.key", "collaboration")
    bank = Tokenizer(generate_keyring(tmp_path / "bank.key", "tokenization"), shared)
    shop = Tokenizer(generate_keyring(tmp_path / "shop.key", "tokenization"), shared)
    a = bank.link_tokenize(pd.Series(["Ann.Lee@Example.com "]))
    b = shop.link_tokenize(pd.Series(["ann.lee@example.com"]))
    assert a[0] == b[0] and a[0].startswith("lk_")
    assert bank.token("ann.lee@example.com") != shop.token("ann.lee@example.com")
    with pytest.raises(KeyFileError, match="no collaboration key"):
        Tokenizer(load_keyring(tmp_path / "bank.key")).link_tokenize(pd.Series(["x"]))


def test_key_files_are_private_and_never_silently_replaced(tmp_path, ring):
    path = tmp_path / "tok.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ring.active.secret.hex() not in repr(ring)
    with pytest.raises(KeyFileError, match="rotate"):
        generate_keyring(path, "tokenization")
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_keyring(path)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="holds a tokenization key"):
        load_keyring(path, "encryption")
    with pytest.raises(KeyFileError, match="does not exist"):
        resolve_keyring("tokenization", file=tmp_path / "missing.key", default_file=tmp_path / "auto.key")
    (tmp_path / "bad.key").write_text("{}")
    (tmp_path / "bad.key").chmod(0o600)
    with pytest.raises(KeyFileError, match="damaged"):
        load_keyring(tmp_path / "bad.key")


def test_rotation_keeps_old_keys_as_retired(tmp_path, ring):
    rotated = rotate_keyring(tmp_path / "tok.key")
    assert rotated.active.key_id != ring.active.key_id
    assert [k.key_id for k in rotated.retired] == [ring.active.key_id]
    assert rotated.get(ring.active.key_id).secret == ring.active.secret
    assert Tokenizer(rotated).token("x", key_id=ring.active.key_id) == Tokenizer(ring).token("x")
    assert rotated.fingerprint != ring.fingerprint


def test_keys_from_environment(monkeypatch):
    monkeypatch.setenv("FEDINSIGHT_TOKENIZATION_KEY", new_env_key())
    ring = resolve_keyring("tokenization")
    assert len(ring.active.secret) == 32 and ring.active.key_id.startswith("tk-env-")
    assert keyring_from_env("FEDINSIGHT_TOKENIZATION_KEY", "tokenization").active.key_id == ring.active.key_id
    monkeypatch.setenv("FEDINSIGHT_TOKENIZATION_KEY", base64.b64encode(os.urandom(16)).decode())
    with pytest.raises(KeyFileError, match="32-byte"):
        resolve_keyring("tokenization")


def test_keys_cli_generate_rotate_list(tmp_path, capsys):
    path = tmp_path / "k" / "enc.key"
    assert main(["partner", "keys", "generate", "--kind", "encryption", "--out", str(path), "--json"]) == 0
    assert main(["partner", "keys", "generate", "--kind", "encryption", "--out", str(path)]) == 2
    assert main(["partner", "keys", "rotate", str(path)]) == 0
    capsys.readouterr()
    assert main(["partner", "keys", "list", str(path), "--json"]) == 0
    listed = capsys.readouterr().out
    assert listed.count('"retired"') == 1 and listed.count('"active"') == 1
    assert base64.b64encode(load_keyring(path).active.secret).decode() not in listed
