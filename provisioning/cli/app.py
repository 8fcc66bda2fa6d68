"""``provisioning``: the root command. It gathers the command groups, takes the options
every client command shares, and turns what goes wrong into one line and an exit code."""

from __future__ import annotations

import sys

import typer
from typer._completion_shared import get_completion_script

from provisioning.cli import admin, auth, batches, rollback, services
from provisioning.cli.common import EXIT_USAGE, Options, fail, options

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


app.command("login")(auth.login)
app.command("logout")(auth.logout)
app.command("whoami")(auth.whoami)
app.add_typer(auth.context_app, name="context")
app.add_typer(batches.batch_app, name="batch")
app.add_typer(batches.servers_app, name="servers")
app.add_typer(batches.taskserv_app, name="taskserv")
app.add_typer(batches.cluster_app, name="cluster")
app.add_typer(rollback.checkpoint_app, name="checkpoint")
app.command("rollback")(rollback.rollback)
app.command("restore")(rollback.restore)
app.add_typer(admin.tasks_app, name="tasks")
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.policies_app, name="policies")
app.add_typer(admin.audit_app, name="audit")
app.add_typer(admin.webhooks_app, name="webhooks")
app.command("up")(services.up)
app.command("orchestrator")(services.orchestrator)
app.command("control-center")(services.control_center)
app.command("doctor")(services.doctor)
app.add_typer(services.keys_app, name="keys")


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
