"""Secret option values are masked wherever a stream is shown, and only there."""

from __future__ import annotations

from conveyor.streams.dsl import parse_stream
from conveyor.streams.masking import mask_definition, mask_options, mask_properties


def test_an_auth_token_is_masked_in_definitions_properties_and_options() -> None:
    definition = "in: http --path=/tx --auth-token='s3 cret' | filter --expression='a > 0' | log"
    shown = mask_definition(definition)
    assert "s3 cret" not in shown
    assert parse_stream(shown).apps[0].option_map() == {"path": "/tx", "auth-token": "***"}
    assert mask_properties(definition, {"app.in.auth-token": "t2", "app.in.path": "/x"}) == {
        "app.in.auth-token": "***",
        "app.in.path": "/x",
    }
    assert mask_options("http", {"auth-token": "t", "path": "/"}) == {
        "auth-token": "***",
        "path": "/",
    }


def test_a_definition_without_secrets_is_shown_as_written() -> None:
    written = "http   --path=/tx|log"
    assert mask_definition(written) == written
    assert mask_definition("http --auth-token='' | log") == "http --auth-token='' | log"
    assert mask_options("log", {"level": "INFO"}) == {"level": "INFO"}
