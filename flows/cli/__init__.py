"""The ``delivery`` command.

    delivery demo                       two services through one staging and production
    delivery setup                      create local blocks (artifact store, staging, production)
    delivery service add SERVICE_DIR    register a service: its route in each environment
    delivery service list|remove        the services each environment carries
    delivery run SERVICE_DIR            deliver one commit of a service
    delivery status [--json]            what is live for each service in each environment
    delivery report [--since DAYS]      DORA figures per service and environment
    delivery plan SERVICE_DIR           what a delivery would do (a dry run: changes nothing)
    delivery rollback ENV [--service S] return a service in ENV to its previous verified release
    delivery retire ENV COMMIT          stop a release kept warm (not serving) in ENV
    delivery down [--service S]         stop the instances and routers the project started
    delivery demo|setup --target docker the container path: images, a registry, DockerTarget
    delivery server-setup               a Prefect server: block types, work pool, automations
    delivery approve|reject RUN_ID      answer a run waiting at its approval gate
    delivery monitor-alert ENV          a monitor's failed check: rolls ENV back (automation)
    delivery lab check PATH             rehearse an Alembic project (or a service's migrations)

Every command that acts on one service takes ``--service`` (it may be left out where an
environment carries one service); those that read show every service by default. Runs flows on
the Prefect API the active profile names; without one, Prefect's ephemeral API (nothing to
start). Analytics are off.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect gives its ephemeral API 20 s to start; on a busy 2-core machine that is not enough.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

from prefect_delivery.flows.cli.common import (  # noqa: E402
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    print_err,
    report_internal_error,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_OK", "build_parser", "main"]


#: Commands that answer at once: they read the router, the target and the ledger from the
#: environments' snapshots and never import Prefect (which takes seconds to load).
FAST = ("status", "down", "rollback", "report", "plan")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delivery", description="Continuous delivery as Prefect flows."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    if only in FAST:
        from prefect_delivery.flows.cli import plan, report, run, status

        fast = {"status": status, "down": status, "report": report, "plan": plan}
        fast.get(only, run).add_commands(sub)
        return parser
    from prefect_delivery.flows.cli import (
        demo,
        lab,
        plan,
        report,
        run,
        server,
        service,
        setup,
        status,
    )

    for commands in (demo, setup, service, run, status, report, plan, lab, server):
        commands.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fast = argv[0] if argv and argv[0] in FAST else None
    args = build_parser(fast).parse_args(argv)
    from prefect_delivery.blocks.errors import ConfigError, DeliveryError, InternalError

    try:
        return args.func(args)
    except ConfigError as exc:
        print_err(str(exc))
        return EXIT_BAD_INPUT
    except InternalError as exc:
        print_err(str(exc))
        return EXIT_INTERNAL
    except DeliveryError as exc:
        print_err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        print_err("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug of ours: said as one, never as bad input
        print_err(report_internal_error(exc))
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
