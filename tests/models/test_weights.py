"""Loading backbone weights from a local state_dict file: round trip and every way it can go wrong."""

from __future__ import annotations

import pytest
import torch

from gradlab.errors import ConfigError
from gradlab.models import build_backbone


def _trained_tiny() -> torch.nn.Module:
    """A tiny backbone whose weights and BN statistics differ from a fresh one's."""
    torch.manual_seed(1)
    net = build_backbone("tiny")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
        net(torch.randn(4, 3, 32, 32))  # train mode: moves the running statistics
    return net.eval()


def test_pretrained_round_trip_gives_identical_outputs(tmp_path):
    source = _trained_tiny()
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    loaded = build_backbone("tiny", pretrained=path).eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        assert not torch.equal(build_backbone("tiny").eval()(x), source(x))  # the round trip did something


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="nope.pt.*does not exist"):
        build_backbone("tiny", pretrained=tmp_path / "nope.pt")


def test_shape_mismatch_lists_offending_keys(tmp_path):
    torch.save(build_backbone("resnet18").state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ConfigError, match=r"shape mismatch in conv1\.weight \(64, 3, 7, 7\) vs \(32, 3, 7, 7\)"):
        build_backbone("tiny", pretrained=tmp_path / "r18.pt")
    with pytest.raises(ConfigError, match="shape mismatch"):  # shapes fail even when not strict
        build_backbone("tiny", pretrained=tmp_path / "r18.pt", strict=False)


def _saved_with(tmp_path, drop: tuple[str, ...] = (), extra: dict | None = None):
    state = build_backbone("tiny").state_dict()
    for k in drop:
        del state[k]
    state.update(extra or {})
    torch.save(state, tmp_path / "w.pt")
    return tmp_path / "w.pt"


def test_missing_keys_are_listed(tmp_path):
    path = _saved_with(tmp_path, drop=("layer4.0.conv2.weight", "bn1.weight"))
    with pytest.raises(ConfigError, match=r"missing keys .*layer4\.0\.conv2\.weight"):
        build_backbone("tiny", pretrained=path)


def test_unexpected_keys_are_listed_and_fc_is_dropped(tmp_path):
    fc = {"fc.weight": torch.zeros(10, 256), "fc.bias": torch.zeros(10)}
    build_backbone("tiny", pretrained=_saved_with(tmp_path, extra=fc))  # an ImageNet classifier: dropped
    with pytest.raises(ConfigError, match=r"unexpected keys head\.weight"):
        build_backbone("tiny", pretrained=_saved_with(tmp_path, extra={"head.weight": torch.zeros(3)}))


def test_not_strict_tolerates_missing_and_unexpected_keys(tmp_path):
    path = _saved_with(tmp_path, drop=("bn1.weight",), extra={"head.weight": torch.zeros(3)})
    net = build_backbone("tiny", pretrained=path, strict=False)
    assert net.out_channels == 256


def test_many_offending_keys_are_summarised(tmp_path):
    torch.save({f"x{i}": torch.zeros(1) for i in range(9)}, tmp_path / "w.pt")
    with pytest.raises(ConfigError, match=r"unexpected keys x0, x1, x2, x3, x4 \(\+4 more\)"):
        build_backbone("tiny", pretrained=tmp_path / "w.pt")


class NotATensor:
    pass


@pytest.mark.parametrize(("content", "message"), [
    ({"step": 3}, "holds a dict, not a state_dict"),
    (NotATensor(), "cannot be read as a state_dict with weights_only=True"),
    (b"garbage", "cannot be read as a state_dict"),
])
def test_files_that_are_not_state_dicts_raise_config_error(tmp_path, content, message):
    path = tmp_path / "w.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ConfigError, match=message):
        build_backbone("tiny", pretrained=path)
