"""Spring Cloud Data Flow's own stream DSL cases, as a table.

Taken (as facts, not code) from SCDF's ``StreamParserTests`` and the stream DSL
chapter of its reference guide. A valid case gives the tree's shape as
:func:`shape` writes it; an invalid one gives SCDF's code and 0-based position.
"""

from __future__ import annotations

from conveyor.streams.dsl import StreamNode

__all__ = ["INVALID", "NAMES", "VALID", "shape"]


def shape(tree: StreamNode) -> str:
    """A compact picture of a tree, close to SCDF's ``stringify``: ``(:src)>(a --k=v)|(b)``."""

    def options(node: object) -> str:
        return "".join(f" --{o.key}={o.value}" for o in getattr(node, "options", ()))

    parts: list[str] = []
    if tree.name:
        parts.append(f"{tree.name} = ")
    if tree.source:
        parts.append(f"(:{tree.source.name}{options(tree.source)})>")
    apps = [f"({a.label + ': ' if a.label else ''}{a.name}{options(a)})" for a in tree.apps]
    parts.append(("||" if tree.unbound else "|").join(apps))
    if tree.sink:
        parts.append(f">(:{tree.sink.name}{options(tree.sink)})")
    return "".join(parts)


#: (definition, expected shape)
VALID: list[tuple[str, str]] = [
    # StreamParserTests
    ("foo", "(foo)"),
    ("gemfire-cq", "(gemfire-cq)"),
    (
        "aaa | filter --expression=#jsonPath(payload,'$.lang')=='en'",
        "(aaa)|(filter --expression=#jsonPath(payload,'$.lang')=='en')",
    ),
    ("aaa --bbb=ccc,", "(aaa --bbb=ccc,)"),
    ("aaa --bbb='ccc'|| bbb", "(aaa --bbb=ccc)||(bbb)"),
    ("mystream = foo", "mystream = (foo)"),
    ("bar = foo | bar", "bar = (foo)|(bar)"),
    ("foo | bar", "(foo)|(bar)"),
    ("label: http", "(label: http)"),
    ("food = http | label3: foo", "food = (http)|(label3: foo)"),
    ("http | foo: bar | file", "(http)|(foo: bar)|(file)"),
    ("foo --name=value", "(foo --name=value)"),
    ("foo --name=value --x=y", "(foo --name=value --x=y)"),
    (
        "gemfire-cq --query='Select * from /Stocks where symbol=''VMW''' --regionName=foo "
        "--foo=bar",
        "(gemfire-cq --query=Select * from /Stocks where symbol='VMW' --regionName=foo --foo=bar)",
    ),
    ("test", "(test)"),
    ("foo --x=1 --y=two ", "(foo --x=1 --y=two)"),
    ("foo --x=1a2b --y=two ", "(foo --x=1a2b --y=two)"),
    ("foo --x=2", "(foo --x=2)"),
    (
        "mystream = http | filter | group1: transform | group2: transform | file",
        "mystream = (http)|(filter)|(group1: transform)|(group2: transform)|(file)",
    ),
    (":mystream.group1 > file", "(:mystream.group1)>(file)"),
    (":mystream.group2 > file", "(:mystream.group2)>(file)"),
    ("mystream = http | foobar | file", "mystream = (http)|(foobar)|(file)"),
    (":mystream.foobar > file", "(:mystream.foobar)>(file)"),
    (
        "foo | transform --expression=--payload | bar",
        "(foo)|(transform --expression=--payload)|(bar)",
    ),
    (
        ":producer > foobar --expression='aaa=bbb \n ccc=ddd' > :consumer",
        "(:producer)>(foobar --expression=aaa=bbb \n ccc=ddd)>(:consumer)",
    ),
    (
        ":producer > foobar --expression='aaa=bbb \r ccc=ddd' > :consumer",
        "(:producer)>(foobar --expression=aaa=bbb \r ccc=ddd)>(:consumer)",
    ),
    (
        "foo |  transform --expression='new StringBuilder(payload).reverse()' | bar",
        "(foo)|(transform --expression=new StringBuilder(payload).reverse())|(bar)",
    ),
    (
        ":producer > transform --expression='payload.toUpperCase()' | filter "
        "--expression='payload.length() > 4'> :consumer",
        "(:producer)>(transform --expression=payload.toUpperCase())|(filter "
        "--expression=payload.length() > 4)>(:consumer)",
    ),
    (
        "time | transform --expression='T(org.joda.time.format.DateTimeFormat).forPattern("
        '"yyyy-MM-dd HH:mm:ss").parseDateTime(payload)\'',
        "(time)|(transform --expression=T(org.joda.time.format.DateTimeFormat).forPattern("
        '"yyyy-MM-dd HH:mm:ss").parseDateTime(payload))',
    ),
    (
        "http | transform --outputType='text/plain|charset=UTF-8'  | log",
        "(http)|(transform --outputType=text/plain|charset=UTF-8)|(log)",
    ),
    (
        "http | transform --outputType='text/plain;charset=UTF-8'  | log",
        "(http)|(transform --outputType=text/plain;charset=UTF-8)|(log)",
    ),
    (
        "http | transform --expression='hi'+payload | log",
        "(http)|(transform --expression='hi'+payload)|(log)",
    ),
    (
        "http | transform --expression=payload+'hi' | log",
        "(http)|(transform --expression=payload+'hi')|(log)",
    ),
    (
        "http | transform --expression='payload+''hi''' | log",
        "(http)|(transform --expression=payload+'hi')|(log)",
    ),
    (
        "http | transform --expression='''hi''+payload' | log",
        "(http)|(transform --expression='hi'+payload)|(log)",
    ),
    (
        "http | transform --expression=\"payload+'hi'\" | log",
        "(http)|(transform --expression=payload+'hi')|(log)",
    ),
    (
        "http | transform --expression=\"'hi'+payload\" | log",
        "(http)|(transform --expression='hi'+payload)|(log)",
    ),
    (
        "http | transform --expression=payload+'hi'--param2='foobar' | log",
        "(http)|(transform --expression=payload+'hi'--param2='foobar')|(log)",
    ),
    (
        "http | transform --expression='hi'+payload--param2='foobar' | log",
        "(http)|(transform --expression='hi'+payload--param2='foobar')|(log)",
    ),
    (
        "http | transform --expression='hi'+'world' | log",
        "(http)|(transform --expression='hi'+'world')|(log)",
    ),
    (
        "http | transform --expression=\"'hi'+'world'\" | log",
        "(http)|(transform --expression='hi'+'world')|(log)",
    ),
    (
        "http | filter --expression=payload.matches('hello world') | log",
        "(http)|(filter --expression=payload.matches('hello world'))|(log)",
    ),
    ("http | transform --expression='''hi''' | log", "(http)|(transform --expression='hi')|(log)"),
    (
        "http | transform --expression=\"''''hi''''\" | log",
        "(http)|(transform --expression=''''hi'''')|(log)",
    ),
    (
        "foo |  transform --expression=\"'Hello, world!'\" | bar",
        "(foo)|(transform --expression='Hello, world!')|(bar)",
    ),
    (
        "foo |  transform --expression='''Hello, world!''' | bar",
        "(foo)|(transform --expression='Hello, world!')|(bar)",
    ),
    (
        "http --port=9014 | filter --expression=\"payload == 'foo'\" | log",
        "(http --port=9014)|(filter --expression=payload == 'foo')|(log)",
    ),
    (
        "http --port=9014 | filter --expression='new Foo()' | log",
        "(http --port=9014)|(filter --expression=new Foo())|(log)",
    ),
    (":foobar > file", "(:foobar)>(file)"),
    (":a/ > file", "(:a/)>(file)"),
    (":a/*# > file", "(:a/*#)>(file)"),
    (":foo.* > file", "(:foo.*)>(file)"),
    (":*foo > file", "(:*foo)>(file)"),
    ("http > :foo", "(http)>(:foo)"),
    ("http > :foo/", "(http)>(:foo/)"),
    ("http > :foo/*#", "(http)>(:foo/*#)"),
    ("http > :foo.*", "(http)>(:foo.*)"),
    ("wibble: http > :bar", "(wibble: http)>(:bar)"),
    ("foo = http | bar | file", "foo = (http)|(bar)|(file)"),
    (":foo.bar > file", "(:foo.bar)>(file)"),
    (":mystream.http > file", "(:mystream.http)>(file)"),
    (
        "mystream = http | flibble: transform | file",
        "mystream = (http)|(flibble: transform)|(file)",
    ),
    (":mystream.flibble > file", "(:mystream.flibble)>(file)"),
    ("file | out: file", "(file)|(out: file)"),
    (":bar > :boo", "(:bar)>>(:boo)"),
    (":test --group=test > file", "(:test --group=test)>(file)"),
    (
        'http | transform --expression=\'payload.replace("abc", "")\' | log',
        '(http)|(transform --expression=payload.replace("abc", ""))|(log)',
    ),
    (
        "http | transform --expression='payload.replace(\"abc\", '''')' | log",
        "(http)|(transform --expression=payload.replace(\"abc\", ''))|(log)",
    ),
    ("foo|| bar|| baz", "(foo)||(bar)||(baz)"),
    ("foo --aaa=,|| bar", "(foo --aaa=,)||(bar)"),
    ("foo --aaa=bbb || bar", "(foo --aaa=bbb)||(bar)"),
    ("foo --aaa=bbb|| bar", "(foo --aaa=bbb)||(bar)"),
    ('foo --aaa="bbb"|| bar', "(foo --aaa=bbb)||(bar)"),
    ('foo --aaa="bbb" || bar', "(foo --aaa=bbb)||(bar)"),
    # The reference guide's stream DSL chapter
    ("time | log", "(time)|(log)"),
    ("http | file", "(http)|(file)"),
    (
        "http --server.port=8091 | file --directory=/tmp/httpdata/",
        "(http --server.port=8091)|(file --directory=/tmp/httpdata/)",
    ),
    (
        "http | step1: transform --expression=payload.toUpperCase() | step2: transform "
        "--expression=payload+'!' | log",
        "(http)|(step1: transform --expression=payload.toUpperCase())|(step2: transform "
        "--expression=payload+'!')|(log)",
    ),
    (":mainstream.http > counter", "(:mainstream.http)>(counter)"),
    (":mainstream.step1 > jdbc", "(:mainstream.step1)>(jdbc)"),
    (
        "orderGeneratorApp || baristaApp || hotDrinkDeliveryApp || coldDrinkDeliveryApp",
        "(orderGeneratorApp)||(baristaApp)||(hotDrinkDeliveryApp)||(coldDrinkDeliveryApp)",
    ),
]

#: (definition, SCDF's code, SCDF's position); code None: SCDF's test only says "fails".
INVALID: list[tuple[str, str | None, int | None]] = [
    (":aaa > fff||bbb", "DONT_USE_DOUBLEPIPE_WITH_CHANNELS", 10),
    ("fff||bbb > :zzz", "DONT_USE_DOUBLEPIPE_WITH_CHANNELS", 3),
    ("aaa | bbb|| ccc", "DONT_MIX_PIPE_AND_DOUBLEPIPE", 9),
    ("aaa || bbb| ccc", "DONT_MIX_PIPE_AND_DOUBLEPIPE", 10),
    ("aaa --bbb=ccc||", "OOD", 15),
    ("aaa --bbb='ccc'||", "OOD", 17),
    ("aaa --bbb= --ccc=ddd", "EXPECTED_ARGUMENT_VALUE", 11),
    ("aaa --bbb=| --ccc=ddd", "EXPECTED_ARGUMENT_VALUE", 10),
    ("aaa --bbb=; --ccc=ddd", "EXPECTED_ARGUMENT_VALUE", 10),
    ("aaa --bbb=> --ccc=ddd", "EXPECTED_ARGUMENT_VALUE", 10),
    ("aaa --bbb=\t --ccc=ddd", "EXPECTED_ARGUMENT_VALUE", 12),
    ("aaa --bbb=\n --ccc=ddd", "EXPECTED_ARGUMENT_VALUE", 10),
    ("http | foo: goggle: bar | file", "NO_DOUBLE_LABELS", 12),
    ("http | foo :bar | file", "UNEXPECTED_DATA_AFTER_STREAMDEF", 11),
    ("--foo = bar", None, None),
    ("test | foo--x=13", None, None),
    (
        "foo | transform --expression=new StringBuilder(payload).reverse() | bar",
        "UNEXPECTED_DATA",
        46,
    ),
    ("foo | bar --expression='select foo", "NON_TERMINATING_QUOTED_STRING", 23),
    ('foo | bar --expression="select foo', "NON_TERMINATING_DOUBLE_QUOTED_STRING", 23),
    ("foo |  transform --expression=''Hello, world!'' | bar", "UNEXPECTED_DATA", 44),
    ("http > :test value", "UNEXPECTED_DATA_AFTER_STREAMDEF", 13),
    (":boo .xx > file", "NO_WHITESPACE_IN_DESTINATION_DEFINITION", 5),
    (":boo . xx > file", "NO_WHITESPACE_IN_DESTINATION_DEFINITION", 5),
    (":boo. xx > file", "NO_WHITESPACE_IN_DESTINATION_DEFINITION", 6),
    (":boo.xx. yy > file", "NO_WHITESPACE_IN_DESTINATION_DEFINITION", 9),
    (":boo.xx .yy > file", "NO_WHITESPACE_IN_DESTINATION_DEFINITION", 8),
    (":boo.xx . yy > file", "NO_WHITESPACE_IN_DESTINATION_DEFINITION", 8),
    ("trigger > :myjob   too", "UNEXPECTED_DATA_AFTER_STREAMDEF", 19),
    (".", "EXPECTED_APPNAME", 0),
    (";", "EXPECTED_APPNAME", 0),
    ("foo bar=yyy", "UNEXPECTED_DATA_AFTER_STREAMDEF", 4),
    ("foo bar", "UNEXPECTED_DATA_AFTER_STREAMDEF", 4),
    ("foo --", "OOD", 6),
    ("foo --bar", "OOD", 9),
    ("foo --bar=", "OOD", 10),
    ("|", "EXPECTED_APPNAME", 0),
    ("foo > bar", "EXPECTED_DESTINATION_PREFIX", 6),
    (":foo >", "OOD", 6),
    (":foo > --2323", "EXPECTED_APPNAME", 7),
    (":foo > (", "UNEXPECTED_DATA", 7),
    (":foo > *", "EXPECTED_APPNAME", 7),
    ("::foo > *", "UNEXPECTED_DATA_IN_DESTINATION_NAME", 1),
    (":foo > :", "OOD", 7),
    (":foo | bar", "EXPECTED_APPNAME", 0),
    ("( = http | file", "UNEXPECTED_DATA", 0),
    ("* = http | file", "ILLEGAL_STREAM_NAME", 0),
    (": = http | file", "ILLEGAL_STREAM_NAME", 0),
    ("xxx: http | xxx: file", "DUPLICATE_LABEL", 12),
    ("xxx: http | yyy: filter | transform | xxx: transform | file", "DUPLICATE_LABEL", 38),
    ("xxx: http | yyy: filter | transform | xxx: transform | xxx: file", "DUPLICATE_LABEL", 38),
    ("http | filter | transform | transform | file", "DUPLICATE_LABEL", 28),
    ("foo -- name=value", "NO_WHITESPACE_BEFORE_ARG_NAME", 7),
    ("foo --name =value", "NO_WHITESPACE_BEFORE_ARG_EQUALS", 11),
    ("foo --name= value", "NO_WHITESPACE_BEFORE_ARG_VALUE", 12),
    ("foo --name.=value", "NOT_EXPECTED_TOKEN", 11),
    ("foo --name .sub=value", "NO_WHITESPACE_IN_DOTTED_NAME", 11),
    ("foo --name. sub=value", "NO_WHITESPACE_IN_DOTTED_NAME", 12),
    ("foo||", "OOD", 5),
    ('foo --aaa="bbb"||', "OOD", 17),
    ('foo --aaa="bbb" ||', "OOD", 18),
]

#: (stream name, valid in SCDF) from ensureStreamNamesValid_xd1344 and the guide's examples.
NAMES: list[tuple[str, bool]] = [
    ("foo.bar", False),
    ("-bar", False),
    (".bar", False),
    ("foo-.-bar", False),
    ("0foobar", False),
    ("foo%bar", False),
    ("foo-bar", True),
    ("foo_bar", True),
    ("ticktock", True),
    ("tap_at_http", True),
    ("tap_at_step1_transformer", True),
    ("mainstream", True),
]
