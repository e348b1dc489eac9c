"""Issue 31: whatever text reaches an architecture string or a devices file, it parses or raises HwnasError (one line
for the CLI), never another exception."""

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hwnas.arch import Arch
from hwnas.blocks import BLOCK_TYPES
from hwnas.cells.catalog import get_cell_space
from hwnas.device import PRECISIONS, RUNTIMES, Device, load_devices
from hwnas.errors import HwnasError
from hwnas.profilers.options import OPTIONS

FAST = settings(max_examples=200, deadline=None)


def parses_or_refuses(text: str) -> None:
    """Arch.parse and, when it parses, the block shapes (`specs`) either succeed or raise a one-line HwnasError."""
    try:
        Arch.parse(text).specs()
    except HwnasError as error:
        assert "\n" not in str(error) or "\n" in text


# -- architecture strings -------------------------------------------------------------------------------------
WILD = st.one_of(st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                 st.sampled_from(["", "0", "-1", "²", "٣", "1_0", " 3", "9" * 5000, "0x10", "re", "hs", "nan"]))


def mostly(usual: st.SearchStrategy, rare: st.SearchStrategy, odds: int = 5) -> st.SearchStrategy:
    """`usual` about `odds` times for each `rare` one (`st.one_of` draws its branches evenly)."""
    return st.integers(0, odds).flatmap(lambda i: usual if i else rare)


def numbers(low: int, high: int) -> st.SearchStrategy[str]:
    """Mostly plausible numbers (low..high), sometimes anything a typo or a fuzzer could write."""
    return mostly(st.integers(low, high).map(str), WILD)


def odd() -> st.SearchStrategy[str]:
    return mostly(st.sampled_from(["1", "3", "5", "7"]), WILD)


ROW_FORMS = {"cn": "cn_k{odd}_c{c}", "ir": "ir_r{r}_k{odd}_s{s}_e{e}_c{c}", "ds": "ds_k{odd}_c{c}_se0.25",
             "skip": "skip_s{s}_c{c}", "fc": "fc_c{c}_h{c}", "dil": "dil_k{odd}_d{s}_c{c}", "g": "ir_k3_e{e}_g{s}_c{c}"}
VALID_ROWS = st.builds(lambda form, **values: form.format(**values), st.sampled_from(sorted(ROW_FORMS.values())),
                       odd=odd(), c=numbers(1, 64), r=numbers(1, 3), s=numbers(1, 2), e=numbers(1, 6))
FIELDS = st.one_of(*(numbers(1, 8).map(lambda v, p=prefix: p + v) for prefix in ("r", "k", "d", "s", "e", "g", "c")),
                   st.sampled_from(["se0.25", "nre", "nhs", "nzz", "q4", "se", "c"]))
WILD_ROWS = st.tuples(st.sampled_from(sorted(BLOCK_TYPES) + ["xx", ""]), st.lists(FIELDS, max_size=6)).map(
    lambda row: "_".join([row[0], *row[1]]))
ROWS = mostly(VALID_ROWS, WILD_ROWS)
ACTS = mostly(st.sampled_from(["relu", "relu6", "hswish", "swish"]), st.sampled_from(["gelu", "", "RELU"]))
ARCHS = st.tuples(numbers(1, 64), ACTS, st.lists(ROWS, max_size=6)).map(lambda a: f"{a[0]}:{a[1]}:{','.join(a[2])}")


@FAST
@given(st.text())
@example("²:relu:fc_c10")  # isdigit() but not int()
@example("9" * 5000 + ":relu:fc_c10")  # past int()'s digit limit
def test_any_text_is_an_architecture_or_one_error(text):
    parses_or_refuses(text)


@FAST
@given(ARCHS)
@example("32:relu:cn_k3_s0_c16")  # stride 0 divided by
@example("32:relu:ir_k3_einf_c16")  # an infinite width
def test_near_valid_architecture_strings_parse_or_raise_hwnas_errors(text):
    parses_or_refuses(text)


def cell_arch(space: str) -> st.SearchStrategy[str]:
    """`cells:SPACE:...` strings shaped like the space's genotypes (names, nodes, inputs), with typos now and then."""
    names, nodes, inputs = {"darts": (("normal", "reduce"), 4, 2), "nb201": (("cell",), 3, 1)}[space]
    good = st.tuples(st.sampled_from(get_cell_space(space).primitives), st.just("~"),
                     st.integers(0, inputs - 1).map(str)).map("".join)
    typo = st.tuples(st.sampled_from(["nope", "", "sep_conv_3x3"]), st.sampled_from(["", "~~", "~"]),
                     numbers(0, inputs + 2)).map("".join)
    edge = mostly(good, typo, odds=40)
    node = st.lists(edge, min_size=1, max_size=2).map(lambda edges: "|" + "|".join(edges) + "|")
    cell = mostly(st.lists(node, min_size=nodes, max_size=nodes), st.lists(node, max_size=6)).map("+".join)
    genotype = st.tuples(*[cell] * len(names)).map(lambda cells: ";".join(f"{n}={c}" for n, c in zip(names, cells)))
    layers = numbers(1, 12) if space == "darts" else mostly(st.sampled_from(["3", "6", "9"]), WILD)
    return st.tuples(numbers(4, 64), numbers(2, 32), layers, numbers(1, 20), genotype).map(
        lambda a: f"cells:{space}:{a[0]}:c{a[1]}_l{a[2]}_k{a[3]}:{a[4]}")


CELL_ARCHS = mostly(st.one_of(cell_arch("darts"), cell_arch("nb201")), st.one_of(
    st.text(max_size=60).map(lambda text: "cells:" + text),
    st.just("cells:darts:32:c16_l8_k10:Genotype(normal=[('sep_conv_3x3', 0)], reduce=[('max_pool_3x3', 1)])")))


@FAST
@given(CELL_ARCHS)
@example("cells:darts:²:c16_l8_k10:normal=|sep_conv_3x3~0|")
@example("cells:darts:32:c16_l8_k10:normal=|sep_conv_3x3~²|")
def test_cell_architecture_strings_parse_or_raise_hwnas_errors(text):
    parses_or_refuses(text)


# -- devices files --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("devices")


def loads_or_refuses(folder, body: bytes | str) -> None:
    path = folder / "devices.yaml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    try:
        devices = load_devices(path)
    except HwnasError as error:
        assert "\n" not in str(error)
    else:
        assert all(isinstance(device, Device) for device in devices.values())


@FAST
@given(st.one_of(st.text(), st.binary()))
@example(b"devices:\n  x: {runtime: onnxruntime, description: caf\xe9}\n")  # not UTF-8
@example("devices: {x: {runtime: onnxruntime, threads: " + "9" * 5000 + "}}")  # past int()'s digit limit
@example("devices: " + "[" * 5000)  # deeper than the parser's recursion
def test_any_devices_text_loads_or_is_one_error(folder, body):
    loads_or_refuses(folder, body)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(SCALARS, inner, max_size=3)), max_leaves=8)
OPTION_VALUES = st.sampled_from(["all", "basic", "bogus", True, 0, 1024, "ALL", "CPU_ONLY", "iOS16", "random", "x.npy",
                                 "off", None])
SETTINGS = {"threads": mostly(st.integers(-2, 2000), VALUES), "batch": mostly(st.integers(-1, 5000), VALUES),
            "precision": mostly(st.sampled_from(PRECISIONS), VALUES), "python": mostly(st.just("python3"), VALUES),
            "transport": mostly(st.sampled_from(["local", "agent://local", "ssh://pi@box:22", "adb://", "ftp://x"]),
                                VALUES),
            "description": VALUES,
            "options": mostly(st.dictionaries(st.sampled_from(sorted({k for o in OPTIONS.values() for k in o})),
                                              OPTION_VALUES, max_size=2), st.dictionaries(SCALARS, VALUES, max_size=2))}
ENTRY = mostly(st.fixed_dictionaries({"runtime": st.sampled_from(RUNTIMES)}, optional=SETTINGS),
               st.one_of(st.dictionaries(st.sampled_from([*SETTINGS, "runtime", "color"]), VALUES, max_size=4), VALUES))
NAMES = mostly(st.text("abcxyz019-_.", min_size=1, max_size=8), SCALARS)
DOCUMENTS = mostly(st.fixed_dictionaries({"devices": st.dictionaries(NAMES, ENTRY, max_size=3)}),
                   st.one_of(st.fixed_dictionaries({"devices": VALUES, "extra": VALUES}), VALUES))


@FAST
@given(DOCUMENTS)
@example({"devices": {"x": {"runtime": "onnxruntime", "options": {"optimization": "bogus"}}}})
@example({"devices": {"x": {"runtime": "tflite", 1: 2, "z": 3}}})  # keys that do not sort together
def test_any_yaml_document_of_devices_loads_or_is_one_error(folder, document):
    loads_or_refuses(folder, yaml.safe_dump(document))
