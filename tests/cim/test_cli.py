"""The `cim` program lists its command groups and reports bad input bilingually."""

from __future__ import annotations


def test_help_lists_the_groups(cli):
    res = cli("--help", check=True)
    for group in ("db", "token", "layers", "serve"):
        assert group in res.stdout


def test_bad_role_is_a_usage_error(cli):
    res = cli("token", "create", "--role", "superuser")
    assert res.returncode == 2
    assert "superuser" in res.stderr
