"""The one ``fedinsight`` command: one module per command group, wiring only.

Every :class:`~fedinsight.core.errors.FedinsightError` becomes a plain message on stderr and the error's
exit code (2 for invalid data or options); a traceback is only ever shown for a genuine bug.

=====================  =====================================================================
module                 commands
=====================  =====================================================================
:mod:`.data`           ``data fetch|validate|synth|partition|scan``, ``demo``
:mod:`.simulate`       ``simulate <task>`` for every registered task (flags from its options)
:mod:`.partner`        ``partner map|init|check|forget|artifacts|keys|start|stop|ready``
:mod:`.targets`        ``partner export targets`` (on the partner)
:mod:`.serve`          ``score propensity``, ``recommend`` (on the partner)
:mod:`.insights`       ``insights list|show``
:mod:`.deploy`         ``certs``, ``coordinator``, ``job``, ``tokens``, ``audit``
:mod:`.report`         ``report RUN``
=====================  =====================================================================
"""

from __future__ import annotations

import sys

import click
import typer
from sqlalchemy.exc import SQLAlchemyError

import fedinsight  # noqa: F401  (sets Flower's offline environment variables)
from fedinsight.cli import data, deploy, insights, partner, report, serve, simulate
from fedinsight.cli.common import err
from fedinsight.core.errors import DataValidationError, FedinsightError, StateIntegrityError
from fedinsight.core.redact import redact_secrets

app = typer.Typer(
    name="fedinsight",
    help="Privacy-preserving federated analytics for precision marketing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.data_app, name="data")
app.add_typer(simulate.simulate_app, name="simulate")
app.add_typer(serve.score_app, name="score")
app.add_typer(insights.insights_app, name="insights")
app.add_typer(partner.partner_app, name="partner")
for _name, _group in (("certs", deploy.certs_app), ("coordinator", deploy.coordinator_app), ("job", deploy.job_app),
                      ("tokens", deploy.tokens_app), ("audit", deploy.audit_app)):
    app.add_typer(_group, name=_name)
app.command("demo")(data.demo)
app.command("report")(report.report_cmd)
app.command("recommend")(serve.recommend_cmd)


def _report_error(exc: FedinsightError) -> None:
    if isinstance(exc, DataValidationError) and len(exc.problems) > 1:
        err.print(f"error: {len(exc.problems)} problems found:", highlight=False, markup=False)
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
    else:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the CLI and map user errors to exit codes without tracebacks."""
    try:
        result = app(args=argv, prog_name="fedinsight", standalone_mode=False)
    except FedinsightError as exc:
        _report_error(exc)
        return exc.exit_code
    except SQLAlchemyError as exc:  # a database failing mid-command: one line, never a driver traceback
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        err.print(f"error: the database failed: {redact_secrets(first)[:300]} (check the URL, that the server is up, "
                  "or restore the file from a backup)", highlight=False, markup=False, soft_wrap=True)
        return StateIntegrityError.exit_code
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
