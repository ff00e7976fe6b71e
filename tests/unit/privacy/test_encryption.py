"""Encryption at rest: AES-GCM files that hide their content and refuse to load when tampered with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fedinsight.cli import main
from fedinsight.core.errors import KeyFileError, ProtectionPolicyError, TamperedDataError
from fedinsight.partner.policy import KeySource, ProtectionPolicy
from fedinsight.partner.vault import PartnerVault
from fedinsight.privacy.encryption import (
    decrypt_bytes,
    encrypt_bytes,
    encryption_keyring,
    read_encrypted,
    write_encrypted,
)
from fedinsight.privacy.keys import generate_keyring, new_env_key, rotate_keyring

SECRET = b"customer tk_0123 scored 0.97 -- a distinctive plaintext"


@pytest.fixture
def ring(tmp_path):
    return generate_keyring(tmp_path / "enc.key", "encryption")


def test_round_trip_hides_the_plaintext(tmp_path, ring):
    path = write_encrypted(tmp_path / "scores.bin", SECRET, ring)
    blob = path.read_bytes()
    assert SECRET not in blob and b"distinctive" not in blob
    assert read_encrypted(path, ring) == SECRET
    assert encrypt_bytes(SECRET, ring) != encrypt_bytes(SECRET, ring)  # fresh nonce each time


@pytest.mark.parametrize("position", [0, 9, 30, -1, -20])
def test_any_flipped_byte_fails_with_a_clear_error(tmp_path, ring, position):
    path = write_encrypted(tmp_path / "ckpt.bin", SECRET, ring)
    blob = bytearray(path.read_bytes())
    blob[position] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises((TamperedDataError, KeyFileError)) as info:
        read_encrypted(path, ring)
    assert str(path) in str(info.value)


def test_truncated_swapped_and_plain_files_are_refused(tmp_path, ring):
    a = write_encrypted(tmp_path / "a.bin", b"model a", ring)
    b = write_encrypted(tmp_path / "b.bin", b"model b", ring)
    a.write_bytes(a.read_bytes()[:-5])
    with pytest.raises(TamperedDataError, match="failed authentication"):
        read_encrypted(a, ring)
    b.rename(tmp_path / "c.bin")  # a valid file stored under another artifact's name
    with pytest.raises(TamperedDataError, match="stored under another name"):
        read_encrypted(tmp_path / "c.bin", ring)
    (tmp_path / "plain.bin").write_bytes(b"just some bytes, not encrypted")
    with pytest.raises(TamperedDataError, match="not a fedinsight-encrypted file"):
        read_encrypted(tmp_path / "plain.bin", ring)
    with pytest.raises(TamperedDataError, match="truncated"):
        decrypt_bytes(b"FDIENC1\n\x05ab", ring)


def test_rotation_opens_old_files_and_seals_new_ones_under_the_new_key(tmp_path, ring):
    old = write_encrypted(tmp_path / "old.bin", b"v1", ring)
    rotated = rotate_keyring(tmp_path / "enc.key")
    assert read_encrypted(old, rotated) == b"v1"
    new = write_encrypted(tmp_path / "new.bin", b"v2", rotated)
    assert rotated.active.key_id.encode() in new.read_bytes()
    with pytest.raises(KeyFileError, match="not in the key ring"):
        read_encrypted(new, ring)  # the old ring does not have the new key


def test_key_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDINSIGHT_ENCRYPTION_KEY", new_env_key())
    path = write_encrypted(tmp_path / "x.bin", SECRET, encryption_keyring())
    assert read_encrypted(path, encryption_keyring()) == SECRET
    monkeypatch.setenv("FEDINSIGHT_ENCRYPTION_KEY", new_env_key())  # a different key cannot open it
    with pytest.raises(KeyFileError, match="not in the key ring"):
        read_encrypted(path, encryption_keyring())
    monkeypatch.setenv("FEDINSIGHT_ENCRYPTION_KEY", "not base64 !!")
    with pytest.raises(KeyFileError):
        encryption_keyring()


def _vault(tmp_path) -> PartnerVault:
    generate_keyring(tmp_path / "keys" / "enc.key", "encryption")
    policy = ProtectionPolicy(state_dir=tmp_path / "state", encryption=KeySource(file=tmp_path / "keys" / "enc.key"),
                              tokenization=KeySource(file=tmp_path / "keys" / "tok.key"))
    return PartnerVault(policy)


def test_vault_stores_frames_checkpoints_and_arrays_encrypted(tmp_path):
    vault = _vault(tmp_path)
    frame = pd.DataFrame({"customer_id": ["tk_aa", "tk_bb"], "score": [0.25, 0.75]})
    vault.save_frame("scores", frame, kind="scores", job_id="j")
    vault.save_state_dict("ckpt", {"w": torch.arange(4.0)}, kind="checkpoint")
    vault.save_arrays("emb", {"e": np.eye(3)}, kind="embeddings")
    pd.testing.assert_frame_equal(vault.load_frame("scores"), frame)
    assert torch.equal(vault.load_state_dict("ckpt")["w"], torch.arange(4.0))
    assert np.array_equal(vault.load_arrays("emb")["e"], np.eye(3))
    assert b"tk_aa" not in vault.path("scores").read_bytes()
    assert dict(vault.verify()) == {"scores": "ok", "ckpt": "ok", "emb": "ok"}
    with pytest.raises(ProtectionPolicyError, match="kind"):
        vault.save("x", b"", kind="selfie")
    with pytest.raises(ProtectionPolicyError, match="artifact name"):
        vault.path("../escape")


def test_artifacts_cli_exits_5_on_a_tampered_artifact(tmp_path, capsys):
    vault = _vault(tmp_path)
    vault.save("features", b"feature cache", kind="features")
    policy_file = tmp_path / "protection.toml"
    policy_file.write_text('[partner]\nstate-dir = "state"\n[keys]\ntokenization-file = "keys/tok.key"\n'
                           'encryption-file = "keys/enc.key"\n')
    assert main(["partner", "artifacts", "--policy", str(policy_file), "--json"]) == 0
    path = vault.path("features")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    capsys.readouterr()
    assert main(["partner", "artifacts", "--policy", str(policy_file), "--json"]) == 5
    assert "TamperedDataError" in capsys.readouterr().out
