"""``[replay] allow`` / ``pass_headers`` and ``[arms.NAME] auth`` in shadow.toml."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shadow.config import ArmConfig, ReplayConfig, load_config, override
from shadow.errors import ConfigError
from shadow.wire.routes import DEFAULT_ALLOW


def _load(tmp_path: Path, text: str) -> ReplayConfig:
    path = tmp_path / "shadow.toml"
    path.write_text(text)
    return load_config(path).replay


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    return str(info.value)


def test_allow_replaces_the_default_routes(tmp_path: Path) -> None:
    """``allow`` is read as written and becomes the allow-list in force."""
    replay = _load(tmp_path, '[replay]\nallow = ["POST /v1/chat/completions", "POST /v2/{t}/x"]\n')
    assert replay.routes().patterns == ("POST /v1/chat/completions", "POST /v2/{t}/x")
    assert ReplayConfig().routes().patterns == DEFAULT_ALLOW


def test_allowed_paths_is_a_deprecated_alias_of_exact_post_routes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The old key still works, now meaning POST to exactly those paths, and says so once."""
    with caplog.at_level(logging.WARNING, logger="shadow.config"):
        replay = _load(tmp_path, '[replay]\nallowed_paths = ["/v1/embeddings"]\n')
        override(replay, "replay", speed=2.0)  # rebuilt: not warned twice
    assert replay.routes().patterns == ("POST /v1/embeddings",)
    assert not replay.routes().check("POST", "/v1/embeddings/x").allowed  # no longer a prefix
    assert not replay.routes().check("GET", "/v1/embeddings").allowed
    warnings = [r.getMessage() for r in caplog.records if "allowed_paths" in r.getMessage()]
    assert warnings == [
        "replay.allowed_paths is deprecated: it now means POST to these exact paths; "
        'write replay.allow = ["POST /v1/embeddings"] instead'
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[replay]\nallow = ["POST /v1/x"]\nallowed_paths = ["/v1/y"]\n',
            "replay.allowed_paths has value ['/v1/y']; it is the deprecated alias of replay.allow",
        ),
        ("[replay]\nallow = []\n", "replay.allow has value []; name at least one route"),
        ('[replay]\nallow = ["/v1/chat"]\n', "replay.allow has value '/v1/chat'; write each"),
        ('[replay]\nallow = ["POST /v1/../files"]\n', "no empty, '.' or '..' segments"),
        ('[replay]\nallowed_paths = ["/v1/a b"]\n', "replay.allowed_paths has value '/v1/a b'"),
        ('[replay]\npass_headers = ["X-Auth-Token"]\n', "it looks like a credential"),
        ('[replay]\npass_headers = ["Ocp-Apim-Subscription-Key"]\n', "looks like a credential"),
        ('[replay]\npass_headers = ["Cookie"]\n', "looks like a credential"),
        ('[replay]\npass_headers = ["x-session-id"]\n', "looks like a credential"),
        ('[replay]\npass_headers = ["X-Forwarded-For"]\n', "framing, forwarding or account"),
        ('[replay]\npass_headers = ["content-encoding"]\n', "framing, forwarding or account"),
        ('[replay]\npass_headers = ["openai-organization"]\n', "framing, forwarding or account"),
        ('[replay]\npass_headers = ["x a"]\n', "name a header"),
        ('[arms.candidate]\nauth = "basic"\n', "arms.candidate.auth has value 'basic'"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    """Each refusal is one line naming the setting."""
    assert expected in _error(tmp_path, text)


def test_pass_headers_and_auth_are_read(tmp_path: Path) -> None:
    """Named, non-secret headers are read as written (compared lower-cased); an arm may fix its
    auth style."""
    path = tmp_path / "shadow.toml"
    path.write_text(
        '[replay]\npass_headers = ["X-Request-Source"]\n'
        '[arms.candidate]\nurl = "http://127.0.0.1:1"\nauth = "x-api-key"\n'
    )
    config = load_config(path)
    assert config.replay.pass_headers == ("X-Request-Source",)
    assert config.arms["candidate"].auth == "x-api-key"
    assert ArmConfig().auth == "auto"
