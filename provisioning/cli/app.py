"""``provisioning``: the root command. It gathers the command groups, takes the options
every client command shares, and turns what goes wrong into one line and an exit code."""

from __future__ import annotations

import sys

import typer
from typer._completion_shared import get_completion_script

from provisioning.cli import admin, auth, batches, extensions, rollback, services, tokens
from provisioning.cli.common import Options, fail, options
from provisioning.cli.start import EXIT_USAGE

HELP = """Run, drive and administer the provisioning orchestrator and control center.

A context (see 'provisioning context list') holds a control center URL (--server),
an orchestrator URL (--orchestrator; default: the server's host, port 9090) and a
session. Each value comes from its flag, else the environment (PROVISIONING_URL,
PROVISIONING_ORCHESTRATOR_URL, PROVISIONING_TOKEN, PROVISIONING_CONTEXT), else the
credentials file ($XDG_CONFIG_HOME/provisioning/credentials.json).

Exit codes: 0 ok; 1 failed (a server error, a batch that failed or was cancelled);
2 usage or validation error; 3 server down.

\b
Examples:
  provisioning up
  provisioning login --server http://127.0.0.1:9080 --username admin
  provisioning batch submit examples/multi_cloud_deployment.json --watch
  provisioning batch list -o json
"""

app = typer.Typer(
    name="provisioning",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    context: str = typer.Option(None, "--context", help="the named context to use (PROVISIONING_CONTEXT)"),
    server: str = typer.Option(None, "--server", help="control center URL (PROVISIONING_URL)"),
    orchestrator: str = typer.Option(
        None, "--orchestrator", help="orchestrator URL (PROVISIONING_ORCHESTRATOR_URL; default: port 9090)"
    ),
    token: str = typer.Option(
        None, "--token", help="a bearer token to use (PROVISIONING_TOKEN)", show_default=False
    ),
    debug: bool = typer.Option(False, "--debug", help="on an error, print its code, request id and details"),
    config: str = typer.Option(
        None, "--config", envvar="PROVISIONING_CONFIG", help="the services' TOML settings file"
    ),
) -> None:
    opts: Options = options(ctx)
    opts.context, opts.server, opts.orchestrator = context, server, orchestrator
    opts.token, opts.debug, opts.config = token, debug, config
    if config and ctx.invoked_subcommand not in {"completion", None}:
        services.settings_of(ctx)  # a bad settings file stops every command with one line


@app.command("completion")
def completion(shell: str = typer.Argument(..., help="bash, zsh or fish")) -> None:
    """Print the shell completion script (or run 'provisioning --install-completion').

    \b
    Examples:
      provisioning completion bash > ~/.local/share/bash-completion/completions/provisioning
      provisioning completion zsh > "${fpath[1]}/_provisioning"
      provisioning completion fish > ~/.config/fish/completions/provisioning.fish
    """
    if shell not in ("bash", "zsh", "fish"):
        fail(f"no completion for {shell!r}: bash, zsh or fish")
    print(get_completion_script(prog_name="provisioning", complete_var="_PROVISIONING_COMPLETE", shell=shell))


COMMANDS = {
    "login": auth.login,
    "logout": auth.logout,
    "whoami": auth.whoami,
    "rollback": rollback.rollback,
    "restore": rollback.restore,
    "up": services.up,
    "orchestrator": services.orchestrator,
    "control-center": services.control_center,
    "doctor": services.doctor,
}
GROUPS = {
    "context": auth.context_app,
    "batch": batches.batch_app,
    "servers": batches.servers_app,
    "taskserv": batches.taskserv_app,
    "cluster": batches.cluster_app,
    "checkpoint": rollback.checkpoint_app,
    "tasks": admin.tasks_app,
    "users": admin.users_app,
    "policies": admin.policies_app,
    "audit": admin.audit_app,
    "webhooks": admin.webhooks_app,
    "tokens": tokens.tokens_app,
    "extensions": extensions.extensions_app,
    "keys": services.keys_app,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)


def main(argv: list[str] | None = None) -> int:
    """The console script: the exit code of the command (never a traceback)."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="provisioning", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # a usage error: Typer's (vendored) Click exceptions
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"provisioning: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return rc if isinstance(rc, int) else 0
