"""The condition language on its own: literals Casbin cannot rewrite, RE2 patterns,
save-time checks on sample contexts, normalised facts, operation facts, and stored
lines of an older release compiled again."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.security.conditions import (
    ALWAYS,
    FUNCTIONS,
    MAX_MATCH_INPUT,
    NEVER,
    ConditionError,
    RoleSet,
    check_on_samples,
    compile_condition,
    display,
    fold,
    glob_match,
    glob_to_regex,
    ip_match,
    key_match,
    operations_of,
    recompile,
    regex_match,
)
from shared.security.policy import PolicyEngine, Rule, compile_rules, current_line, read_model
from shared.settings import Settings

MODEL = read_model(Settings().policies_dir)
SUBJECTS = ("developer", "user:dana")


def context(**parts: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "user": {"id": "u", "username": "dana", "role": RoleSet(("developer",)), "roles": ["developer"]},
        "request": {"ip": "10.1.2.3", "method": "GET", "path": "/", "service": "orchestrator"},
        "time": {"hour": 12, "minute": 0, "weekday": 0, "date": "2026-01-05"},
        "batch": {"environment": None, "check_mode": False, "name": None},
        "operation": {
            "type": None,
            "provider": None,
            "program": None,
            "program_name": None,
            "env_keys": [],
            "program_allowed": False,
        },
    }
    base["user"]["mfa"] = False
    for key, value in parts.items():
        base[key] = {**base[key], **value}
    return base


def engine_allowing(condition: str) -> PolicyEngine:
    engine = PolicyEngine(MODEL)
    engine.load_lines(compile_rules([Rule("allow", "tasks", ("read",), condition, ("developer",))]))
    return engine


@pytest.mark.parametrize(
    "path",
    ["/tasks/a!b", "/a&&b", "a||b", "!", "x != y", "r.ctx", "p.cond", "it's", 'say "hi"', "back\\slash"],
)
def test_literals_reach_casbin_unchanged(path: str) -> None:
    literal = "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"
    engine = engine_allowing(f"request.path == {literal}")
    assert engine.decide(SUBJECTS, "tasks", "read", context(request={"path": path}))
    assert not engine.decide(SUBJECTS, "tasks", "read", context(request={"path": path + "x"}))


def test_regex_functions_are_re2() -> None:
    # Python's re takes ~2^n steps here; RE2 is linear (a 50-character name would never return).
    name = "a" * 50 + "!"
    assert regex_match(name, "^(a+)+$") is False
    assert regex_match("a" * 50, "^(a+)+$") is True
    assert FUNCTIONS["regexMatch"] is regex_match
    engine = engine_allowing("!regexMatch(batch.name, '^(a+)+$')")
    assert engine.decide(SUBJECTS, "tasks", "read", context(batch={"name": name}))
    assert not engine.decide(SUBJECTS, "tasks", "read", context(batch={"name": "a" * 50}))


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("regexMatch(batch.name, '(')", "not supported by RE2"),
        ("regexMatch(batch.name, '(a)\\\\1')", "not supported by RE2"),
        ("regexMatch(batch.name, '(?=a)')", "not supported by RE2"),
        ("regexMatch(batch.name, batch.environment)", "string literal"),
        ("regexMatch(batch.name)", "two positional arguments"),
        ("regexMatch(batch.name, 'a', 'b')", "two positional arguments"),
        ("globMatch(request.path, '/a/[x')", "without ']'"),
        ("ipMatch(request.ip, 'ten')", "not an address"),
        ("'a' < 1", "TypeError"),
        ("batch.environment < 'p'", "batch.environment is null"),
        ("'x' in batch.name", "batch.name is null"),
        ("user.roles < 'x'", "TypeError"),
        ("regexMatch(user.roles, 'x')", "text fact"),
        ("batch.name", "rather than true or false"),
        ("time.hour", "rather than true or false"),
        ("operation.env_keys", "rather than true or false"),
        ("nope == 1", "unknown name"),
        ("operation.argv == 1", "operation.argv is not known"),
    ],
)
def test_conditions_that_would_fail_are_refused_with_the_reason(condition: str, reason: str) -> None:
    with pytest.raises(ConditionError) as err:
        compile_condition(condition)
    assert reason in str(err.value)


def test_a_refused_condition_names_its_rule() -> None:
    rules = [
        Rule("allow", "tasks", ("read",)),
        Rule("allow", "tasks", ("read",), "user.mfa == true"),
        Rule("allow", "tasks", ("read",), "'a' < 1"),
    ]
    with pytest.raises(ConditionError) as err:
        compile_rules(rules)
    assert err.value.field == "rules.2.condition"
    assert str(err.value).startswith("rules.2.condition: ")


def test_guarded_conditions_are_accepted() -> None:
    for condition in (
        "batch.environment != null && batch.environment < 'p'",
        "batch.name != null and 'x' in batch.name",
        "regexMatch(batch.name, '^nightly-')",  # an absent name matches no pattern
        "'LD_PRELOAD' in operation.env_keys",
        "operation.program_name == 'terraform' && operation.program_allowed",
    ):
        check_on_samples(compile_condition(condition))


@pytest.mark.parametrize(
    "typed", ["prod", " Prod", "PROD\t", "\u200bprod", "pro\u200bd", "\uff30\uff32\uff2f\uff24", "Prod\n"]
)
def test_normalised_facts_cannot_dodge_a_comparison(typed: str) -> None:
    assert fold(typed) == "prod"
    engine = PolicyEngine(MODEL)
    engine.load_lines(
        compile_rules(
            [
                Rule("allow", "batch", ("execute",), None, ("developer",)),
                Rule("deny", "batch", ("execute",), "batch.environment == 'Prod'"),
                Rule("deny", "batch", ("execute",), "regexMatch(batch.environment, '^PRO')"),
            ]
        )
    )
    for env in (typed, "staging"):
        facts = context(batch={"environment": fold(env)})
        assert engine.decide(SUBJECTS, "batch", "execute", facts) is (env == "staging")


def test_literals_compared_with_normalised_facts_are_normalised() -> None:
    assert display(compile_condition("batch.environment in [' Prod', 'STAGING']")) == (
        "batch.environment in ['prod', 'staging']"
    )
    assert display(compile_condition("operation.type == 'Command'")) == "operation.type == 'command'"
    # facts kept as sent are compared as written
    assert display(compile_condition("batch.name == 'Nightly'")) == "batch.name == 'Nightly'"


def test_a_condition_that_raises_at_request_time_denies(caplog: pytest.LogCaptureFixture) -> None:
    engine = engine_allowing("regexMatch(request.path, '^/tasks')")
    assert engine.decide(SUBJECTS, "tasks", "read", context(request={"path": "/tasks/1"}))
    caplog.set_level(logging.WARNING, logger="shared.security.policy")
    too_long = "/tasks/" + "a" * MAX_MATCH_INPUT
    assert engine.decide(SUBJECTS, "tasks", "read", context(request={"path": too_long})) is False
    assert any("the request is denied" in r.getMessage() for r in caplog.records)


def test_stored_lines_of_an_older_release_are_compiled_again(caplog: pytest.LogCaptureFixture) -> None:
    # what the old compiler stored: raw literals, which Casbin rewrote
    old = current_line(["developer", "tasks", "read", "r_ctx.request.path == '/tasks/a!b'", "allow"])
    assert old.cond == compile_condition("request.path == '/tasks/a!b'")
    engine = PolicyEngine(MODEL)
    engine.load_lines([old])
    assert engine.decide(SUBJECTS, "tasks", "read", context(request={"path": "/tasks/a!b"}))
    # conditions the old compiler let through fail closed
    caplog.set_level(logging.WARNING, logger="shared.security.policy")
    assert current_line(["*", "tasks", "read", "'a' < 1", "allow"]).cond == NEVER
    assert current_line(["*", "tasks", "read", "r_ctx.batch.name < 1", "deny"]).cond == ALWAYS
    assert any("fails closed" in r.getMessage() for r in caplog.records)
    assert recompile(ALWAYS) == ALWAYS


@pytest.mark.parametrize(
    ("value", "pattern", "matches"),
    [
        ("/tasks/1", "/tasks/*", True),
        ("/tasks/1/x", "/tasks/*", False),
        ("/tasks/1/x", "/tasks/**", True),
        ("/tasks/.x", "/tasks/*", True),
        ("a.json", "*.{json,yaml}", True),
        ("a.toml", "*.{json,yaml}", False),
        ("b1", "[abc]?", True),
        ("d1", "[!abc]?", True),
        ("a1", "[!abc]?", False),
        ("a*b", "a\\*b", True),
        ("axb", "a\\*b", False),
        (None, "*", False),
    ],
)
def test_glob_match(value: str | None, pattern: str, matches: bool) -> None:
    assert glob_match(value, pattern) is matches
    assert glob_to_regex(pattern).endswith("\\z")


def test_key_and_ip_match() -> None:
    assert key_match("/foo/bar", "/foo/*") and not key_match("/fob", "/foo/*") and key_match("/x", "/x")
    assert not key_match(None, "/x")
    assert ip_match("10.1.2.3", "10.0.0.0/8") and not ip_match("11.0.0.1", "10.0.0.0/8")
    assert not ip_match("unknown", "10.0.0.0/8") and not ip_match(None, "10.0.0.0/8")


def test_operation_facts_of_a_batch() -> None:
    doc = {
        "name": "b",
        "operations": [
            {"id": "s", "type": "server_batch", "provider": "UpCloud "},
            {"id": "c", "type": "command", "run": ["/usr/bin/terraform", "plan"], "env": {"B": "", "A": ""}},
            {"id": "u", "type": "server_batch", "provider": "command", "run": ["echo"], "undo": ["sh", "-c"]},
            "not an operation",
        ],
    }
    ops = operations_of(doc, "/batch/execute", ["echo", "/usr/bin/terraform"])
    assert [(o.op_id, o.index) for o in ops] == [("s", 0), ("c", 1), ("u", 2), ("u", 2)]
    assert ops[0].facts() == {
        "type": "server_batch",
        "provider": "upcloud",
        "program": None,
        "program_name": None,
        "env_keys": [],
        "program_allowed": False,
    }
    assert ops[1].facts()["provider"] == "command"  # a command operation's default provider
    assert ops[1].facts()["program"] == "/usr/bin/terraform"
    assert ops[1].facts()["program_name"] == "terraform"
    assert ops[1].facts()["env_keys"] == ["A", "B"] and ops[1].program_allowed
    # run and undo are each checked: a condition on the program holds for all it may run
    assert [(o.argv_field, o.program, o.program_allowed) for o in ops[2:]] == [
        ("run", "echo", True),
        ("undo", "sh", False),
    ]
    assert "operation 'u' (operations[2])" in ops[3].describe() and "'sh'" in ops[3].describe()
    # an allowlist entry is matched exactly: a basename does not allow another directory's file
    body = {"operations": [{"type": "command", "run": ["/tmp/x/echo"]}]}
    [odd] = operations_of(body, "/batch/execute", ["echo"])
    assert odd.program_allowed is False and odd.facts()["program_name"] == "echo"


def test_operation_facts_of_workflow_routes_and_other_bodies() -> None:
    [op] = operations_of({"infra": "x", "provider": "Command"}, "/workflows/servers/create", [])
    assert (op.type, op.provider, op.program) == ("server_batch", "command", None)
    [op] = operations_of({"infra": "x"}, "/workflows/cluster/create", [])
    assert (op.type, op.provider) == ("cluster_batch", "local")
    assert operations_of(None, "/batch/execute", []) == []
    assert operations_of({"operations": "x"}, "/batch/execute", []) == []
