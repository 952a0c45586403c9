"""Secret option values are masked wherever a stream is shown, and only there; a token the
app only checks is kept as a salted hash."""

from __future__ import annotations

import functools
from pathlib import Path

from conveyor.store.sealing import seal_url, unseal_values
from conveyor.store.secrets import SecretBox
from conveyor.streams.dsl import parse_stream
from conveyor.streams.masking import (
    hash_definition,
    hash_options,
    hash_properties,
    mask_definition,
    mask_options,
    mask_properties,
)
from conveyor.streams.token_hash import TokenCheck, hash_token, is_token_hash


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


def test_an_auth_token_is_stored_as_a_salted_hash_and_hashing_again_keeps_it() -> None:
    definition = "in: http --path=/tx --auth-token='s3 cret' | log"
    stored = hash_definition(definition)
    token = parse_stream(stored).apps[0].option_map()["auth-token"]
    assert "s3 cret" not in stored
    assert is_token_hash(token)
    assert token != parse_stream(hash_definition(definition)).apps[0].option_map()["auth-token"]
    assert hash_definition(stored) == stored  # a redeploy of a stored definition keeps it
    assert TokenCheck(token).matches("s3 cret")
    assert not TokenCheck(token).matches("s3 cret ")
    properties = hash_properties(definition, {"app.in.auth-token": "t2", "app.in.path": "/x"})
    assert properties["app.in.path"] == "/x"
    assert TokenCheck(properties["app.in.auth-token"]).matches("t2")
    assert hash_properties(definition, properties) == properties
    assert mask_definition(stored) == "in: http --path=/tx --auth-token=*** | log"
    assert hash_definition("http --auth-token='' | log") == "http --auth-token='' | log"


def test_a_token_that_only_looks_like_a_hash_is_hashed_as_any_token() -> None:
    # Costs no check would pay (2^40 rounds): not one of ours, so a token like any other.
    lookalike = "scrypt$40$8$1$" + "A" * 22 + "$" + "B" * 43
    assert not is_token_hash(lookalike)
    assert is_token_hash(hash_token(lookalike))
    assert TokenCheck(hash_token(lookalike)).matches(lookalike)
    assert TokenCheck("clear-from-before").matches("clear-from-before")  # an old row's token
    assert not TokenCheck("clear-from-before").matches("clear-from-befor")


def test_a_urls_password_is_masked_when_shown_and_kept_for_the_app() -> None:
    definition = "http | sql --url='postgresql://app:p@ss@db:5432/events' --table=t"
    assert mask_definition(definition) == (
        "http | sql --url=postgresql://app:***@db:5432/events --table=t"
    )
    assert hash_definition(definition) == definition  # the sink needs it to connect
    assert mask_properties(definition, {"app.sql.url": "mysql://u:pw@h/d"}) == {
        "app.sql.url": "mysql://u:***@h/d"
    }
    assert mask_options("http-request", {"url": "https://k:v@api.example/x"}) == {
        "url": "https://k:***@api.example/x"
    }
    assert mask_definition("http | sql --url=sqlite:///e.db --table=t").endswith("e.db --table=t")


def test_url_passwords_are_sealed_in_what_is_kept_and_given_back_whole(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "secrets.key")
    seal = functools.partial(seal_url, box)
    definition = (
        "time | http-request --url=https://u:topsecret@api.example.com/x"
        " | sql --url=postgresql://u:p%40ss@db/x --table=t"
    )
    kept = hash_definition(definition, seal)
    assert "topsecret" not in kept
    assert "p%40ss" not in kept
    assert hash_definition(kept, seal) == kept  # sealed once
    assert mask_definition(kept) == (
        "time | http-request --url=https://u:***@api.example.com/x"
        " | sql --url=postgresql://u:***@db/x --table=t"
    )
    assert unseal_values(box, kept) == definition
    options = hash_options("sql", {"url": "postgresql://u:pw@db/x", "table": "t"}, seal)
    assert unseal_values(box, options) == {"url": "postgresql://u:pw@db/x", "table": "t"}
