"""torch.compile: `unwrap` sees through its wrapper, and the recorder refuses a compiled model before it attaches
anything (recording inside compiled graphs fails with torch 2.13: an AttributeError inside torch._dynamo, and
σ_t's double backward is unsupported there), with a message that says what to do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradlab
from gradlab.errors import ConfigError
from gradlab.parallel import is_compiled, unwrap, wrappers
from tests.instrument.conftest import make_net
from tests.integrations.conftest import assert_no_hooks


def test_unwrap_knows_the_compiled_wrapper_in_any_nesting():
    net = make_net()
    compiled = torch.compile(net)  # lazy: nothing compiles before the first call
    assert is_compiled(compiled) and not is_compiled(net)
    assert unwrap(compiled) is net
    assert unwrap(nn.DataParallel(compiled)) is net
    assert wrappers(nn.DataParallel(compiled))[1:] == [compiled, net]


def test_a_compiled_model_is_refused_with_what_to_do_and_no_hook_attached():
    net = make_net()
    for model in (torch.compile(net), nn.DataParallel(torch.compile(net))):
        with pytest.raises(ConfigError, match=r"compiled \(torch.compile\).*eager module \(model._orig_mod\)"):
            gradlab.watch(model)
        assert_no_hooks(net)
    with gradlab.watch(net) as rec:  # the eager module records as usual
        net(torch.randn(1, 3, 4, 4)).sum().backward()
        rec.step(0)
    assert len(rec.frame())
