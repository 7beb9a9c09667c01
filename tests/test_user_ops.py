"""User ops: the public declaring functions, harmless re-declaration, ``--ops FILE.py``, and
``--activation`` limited to declared one-input activations."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import sympy as sp

import symdl.ops
from symdl.cli import build_parser, main
from symdl.errors import UsageError
from symdl.ops import OPS, activation, elementwise, real
from symdl.ops import registry

MISH = '''"""A user's activation."""
import sympy as sp
from symdl.ops import activation, real

x = real("x")
activation("user_mish", x, x * sp.tanh(sp.log(1 + sp.exp(x))), latex=r"\\operatorname{mish}")
'''


@pytest.fixture(autouse=True)
def _registry_restored():
    """Ops a test declares leave with it: other tests iterate the registry."""
    before = set(OPS)
    yield
    gone = set(OPS) - before
    for name in gone:
        dict.__delitem__(OPS, name)
    for key in [k for k in registry._DIFF if k[1] in gone]:
        del registry._DIFF[key]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_elementwise_is_the_declaring_function_and_internal_imports_still_work():
    from symdl.ops import elementwise as fn
    from symdl.ops.elementwise import SIGMOID_STABLE  # the submodule, by its full name
    assert fn is registry.elementwise and symdl.ops.elementwise is registry.elementwise
    assert callable(fn) and SIGMOID_STABLE.has(sp.exp)
    assert symdl.ops.activation is registry.activation


def test_declaring_the_same_op_again_is_harmless():
    x = real("x")
    op = elementwise("user_cube", x, x**3)
    again = elementwise("user_cube", real("x"), real("x") ** 3, doc="new doc")
    assert again is op and OPS["user_cube"] is op
    assert op.diff(0) == 3 * x**2
    # a built-in declared again, exactly as it is: harmless too
    t = OPS["tanh"]
    assert activation("tanh", t.inputs[0], t.expr, grad_forms=dict(t.grad_forms)) is t


def test_another_definition_under_a_known_name_is_a_clear_error():
    x = real("x")
    elementwise("user_sq", x, x**2)
    with pytest.raises(UsageError, match=r"op 'user_sq' is already declared with another "
                       r"definition \(x\*\*2, not x\*\*4\); give the new definition another name"):
        elementwise("user_sq", x, x**4)
    with pytest.raises(UsageError, match=r"'tanh' is already declared with another definition"):
        elementwise("tanh", x, sp.tanh(2 * x))
    with pytest.raises(UsageError, match="another activation"):
        elementwise("user_sq", x, x**2, activation=True)
    assert OPS["user_sq"].expr == x**2  # the registered op is unchanged


def test_activations_are_declared_one_input_ops():
    acts = OPS.activations()
    assert {"relu", "tanh", "sigmoid", "gelu", "identity", "softplus"} <= set(acts)
    assert not {"neg", "log", "exp", "square", "abs", "sqrt", "add", "mul"} & set(acts)
    assert all(OPS[a].arity == 1 and OPS[a].activation for a in acts)
    x = real("x")
    elementwise("user_plain", x, x / 2)
    activation("user_act", x, x / 3)
    assert "user_plain" not in OPS.activations() and "user_act" in OPS.activations()
    with pytest.raises(UsageError, match="one input symbol"):
        activation("user_two", real("a b"), sp.Integer(1))


def test_activation_flag_is_checked_after_ops_files_not_by_argparse():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    act = next(a for a in train._actions if "--activation" in a.option_strings)
    assert act.choices is None  # no registry (SymPy) needed to build the parser


@pytest.mark.parametrize("name, why", [
    ("neg", "neg is an op but not an activation"),
    ("square", "square is an op but not an activation"),
    ("add", "add is an op of 2 inputs"),
    ("nope", "unknown activation 'nope' \\(choose from: elu, "),
])
def test_cli_refuses_what_is_not_an_activation(capsys, name, why):
    code, out, err = run(capsys, "train", "--dataset", "xor", "--epochs", "1", "--activation", name)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and re.search(why, err), err


def test_train_with_a_users_activation(tmp_path, capsys):
    ops = tmp_path / "mish.py"
    ops.write_text(MISH)
    code, out, err = run(capsys, "train", "--ops", str(ops), "--activation", "user_mish",
                         "--dataset", "xor", "--hidden", "4", "--epochs", "30", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["train_loss"][-1] < res["train_loss"][0] and res["test_accuracy"] == 1.0
    x = OPS["user_mish"].inputs[0]
    assert OPS["user_mish"].activation and OPS["user_mish"].diff(0) == sp.diff(
        x * sp.tanh(sp.log(1 + sp.exp(x))), x)
    # the same file again (a second run in one process, a notebook cell re-run): no error
    from symdl.commands.user_ops import load_ops
    assert load_ops(ops) == []
    code, out, err = run(capsys, "graph", "--ops", str(ops), "--activation", "user_mish",
                         "--dataset", "xor", "--hidden", "2", "--no-grad")
    assert code == 0 and "user_mish(0.z)" in out.replace(" ", ""), out


def test_a_users_activation_is_a_layer_and_a_plain_op_is_not():
    from symdl.nn import Activation
    from symdl.plot import evaluate
    x = real("x")
    activation("user_tanh", x, sp.tanh(x))
    assert repr(Activation("user_tanh")) == "Activation('user_tanh')"
    xs = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(evaluate(OPS["user_tanh"].diff(0), x, xs), 1 - np.tanh(xs) ** 2)
    elementwise("user_half", x, x / 2)
    with pytest.raises(UsageError, match="unknown activation 'user_half'"):
        Activation("user_half")


@pytest.mark.parametrize("body, message", [
    ("import sympy as sp\nfrom symdl.ops import elementwise, real\nx = real('x')\n"
     "elementwise('tanh', x, x)\n", r"bad\.py:4: op 'tanh' is already declared"),
    ("x = 1\nraise RuntimeError('boom')\n", r"bad\.py:2: RuntimeError: boom"),
    ("def f(:\n", r"bad\.py:1: syntax error"),
])
def test_a_failing_ops_file_says_where(tmp_path, capsys, body, message):
    bad = tmp_path / "bad.py"
    bad.write_text(body)
    code, out, err = run(capsys, "train", "--ops", str(bad), "--dataset", "xor", "--epochs", "1")
    assert code == 2 and err.count("\n") == 1
    assert re.search(message, err), err


def test_ops_file_must_exist_and_be_python(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--ops", str(tmp_path / "none.py"), "--dataset", "xor")
    assert code == 2 and "--ops: no file" in err
    (tmp_path / "ops.txt").write_text("")
    code, _, err = run(capsys, "train", "--ops", str(tmp_path / "ops.txt"), "--dataset", "xor")
    assert code == 2 and "needs a Python file" in err


def test_a_saved_model_with_a_users_activation_is_used_with_ops(tmp_path, capsys):
    ops = tmp_path / "mish.py"
    ops.write_text(MISH)
    model = tmp_path / "model"
    code, out, err = run(capsys, "train", "--ops", str(ops), "--activation", "user_mish",
                         "--dataset", "xor", "--hidden", "4", "--epochs", "5", "--save", str(model))
    assert code == 0, err
    dict.__delitem__(OPS, "user_mish")  # a fresh process: the op is not declared
    code, out, err = run(capsys, "evaluate", str(model), "--dataset", "xor")
    assert code == 4 and "unknown activation 'user_mish'" in err and "--ops" in err
    code, out, err = run(capsys, "evaluate", str(model), "--dataset", "xor", "--ops", str(ops))
    assert code == 0 and "accuracy" in out, err
    np.save(tmp_path / "x.npy", np.array([[0.0, 1.0], [1.0, 1.0]], np.float32))
    code, out, err = run(capsys, "predict", str(model), "--input", str(tmp_path / "x.npy"),
                         "--ops", str(ops))
    assert code == 0 and len(out.split()) == 2, err
