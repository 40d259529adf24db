"""The optional torchvision backbones: clear errors without torchvision, equivalence with it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gradlab.errors import ConfigError
from gradlab.models import build_backbone, resnet


@pytest.fixture
def torchvision():
    """torchvision, or a skip when it is missing or broken (a torch mismatch raises RuntimeError, not ImportError)."""
    try:
        return pytest.importorskip("torchvision")
    except Exception as e:  # pytest's Skipped is not an Exception, so a real skip passes through
        pytest.skip(f"torchvision cannot be imported: {type(e).__name__}: {e}")


class _BrokenTorchvision:
    """A meta-path finder that makes `import torchvision` fail the way a torch / torchvision mismatch does."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


@pytest.mark.parametrize("how", ["missing", "broken"])
def test_unimportable_torchvision_says_to_install_a_matching_pair(monkeypatch, how):
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    if how == "missing":
        monkeypatch.setitem(sys.modules, "torchvision", None)
    else:
        monkeypatch.setattr(sys, "meta_path", [_BrokenTorchvision(), *sys.meta_path])
    with pytest.raises(ConfigError, match="install a matching torch / torchvision pair"):
        build_backbone("torchvision-resnet50")


def test_unknown_torchvision_architecture_fails_before_importing():
    with pytest.raises(ConfigError, match="backbone='torchvision-resnet18' is unknown"):
        build_backbone("torchvision-resnet18")  # torchvision's BasicBlock cannot dilate


def test_importing_gradlab_models_does_not_import_torchvision():
    code = "import sys, gradlab.models; assert 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("output_stride", "expected"), [(8, 4), (16, 2)])
def test_torchvision_backbone_output_stride(torchvision, output_stride, expected):
    net = build_backbone("torchvision-resnet50", output_stride).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 2048, expected, expected)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_builtin_resnet50_weights_load_into_torchvision_with_equal_outputs(torchvision, tmp_path, output_stride):
    ours = resnet("resnet50", output_stride).eval()
    torch.save(ours.state_dict(), tmp_path / "r50.pt")
    theirs = build_backbone("torchvision-resnet50", output_stride, pretrained=tmp_path / "r50.pt").eval()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x))
