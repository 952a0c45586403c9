"""Streams: pipelines written in a Unix-pipe DSL, run app by app over a message binder.

Layout: ``dsl/`` (tokenizer, parser, syntax tree), ``catalogue`` (the built-in
apps and their options; validation of a parsed stream), ``expressions`` (the
safe expression language), ``messages``, ``binders/`` (embedded, Redis,
RabbitMQ behind one protocol), ``apps/`` (what each built-in app does),
``runtime`` (runs one app over a binder) and ``run`` (its command line).
"""
