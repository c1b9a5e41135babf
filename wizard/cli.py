"""The `meshstead` command: assembles the command groups of wizard.commands and
turns every error a user can cause into one line and a non-zero exit."""

import argparse
import os
import subprocess
import sys
from importlib import import_module

from . import __version__
from .commands.output import add_site_option, err
from .errors import MeshsteadError
from .lab.errors import LabError

GROUPS = ("site", "node", "identity", "invite", "lab", "provision", "image", "demo")


def build_parser() -> argparse.ArgumentParser:
    site_option = argparse.ArgumentParser(add_help=False)
    add_site_option(site_option)
    parser = argparse.ArgumentParser(prog="meshstead", description="Provision a private, offline-capable "
                                     "community mesh from one site inventory.")
    parser.add_argument("--version", action="version", version=f"meshstead {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    # Imported here, inside main's error handling: importing Ansible can already
    # fail on the machine (e.g. a home directory it cannot write its temp dir in).
    for group in GROUPS:
        import_module(f".commands.{group}", __package__).register(sub, site_option)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Arguments after the first `--` go, untouched, to the commands that pass
    them on (`lab exec`, `provision`); options before it are meshstead's."""
    parser = build_parser()
    if "--" in argv:
        cut = argv.index("--")
        ours, passthrough = argv[:cut], argv[cut + 1:]
    else:
        ours, passthrough = argv, []
    args = parser.parse_args(ours)
    if passthrough and not getattr(args, "passthrough_allowed", False):
        parser.error(f"unrecognized arguments: -- {' '.join(passthrough)}")
    args.passthrough = passthrough
    return args


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _ansible_error(exc: Exception) -> str | None:
    """Ansible's own error (it fails at import when it cannot make its temp dir), as one line."""
    if type(exc).__module__.startswith("ansible.") and type(exc).__name__.startswith("Ansible"):
        return f"ansible: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    return None


def main(argv=None) -> int:
    exit_code = 2  # an error the user can fix; 1 for a bug of ours
    try:
        args = parse(list(sys.argv[1:] if argv is None else argv))
        code = args.func(args)
    except MeshsteadError as exc:
        message = str(exc)
    except LabError as exc:
        message = f"lab: {exc}"
    except KeyboardInterrupt:
        err.print("meshstead: interrupted", highlight=False)
        return 130
    except BrokenPipeError:
        # The reader went away (`meshstead node list --json | head`): stop quietly, as
        # programs killed by SIGPIPE do, without Python's complaint at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except subprocess.CalledProcessError as exc:
        program = exc.cmd[0] if isinstance(exc.cmd, list | tuple) else str(exc.cmd).split()[0]
        detail = (exc.stderr or "").strip().splitlines() if isinstance(exc.stderr, str) else []
        message = f"{program}: failed (exit {exc.returncode}){': ' + detail[-1] if detail else ''}"
    except FileNotFoundError as exc:
        message = f"{exc.filename or 'file'}: no such file, directory or program"
    except PermissionError as exc:
        message = f"{exc.filename or 'file'}: permission denied; expected write access (or run as root)"
    except OSError as exc:
        where = exc.filename or "system"
        message = f"{where}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, the traceback on request
        message = _ansible_error(exc)
        if not message:
            if os.environ.get("MESHSTEAD_DEBUG"):
                raise
            message = (f"internal error ({type(exc).__name__}: {exc}); please report it, with the traceback "
                       "that MESHSTEAD_DEBUG=1 shows")
            exit_code = 1
    else:
        return code or 0
    err.print(f"meshstead: error: {_one_line(message)}", markup=False, highlight=False, soft_wrap=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
