import pytest
import torch

from llmrec_lite.projectors import CheckpointMismatchError, ProjectorConfig, Projectors


def make(**kw):
    cfg = dict(cf_dim=8, hidden_size=32, hidden_dim=16, dataset="toy", num_users=5, num_items=7)
    cfg.update(kw)
    torch.manual_seed(0)
    return Projectors(ProjectorConfig(**cfg))


def test_shapes_and_independence():
    p = make()
    x = torch.randn(4, 8)
    assert p.user(x).shape == (4, 32) and p.item(x).shape == (4, 32)
    assert not torch.equal(p.user.fc1.weight, p.item.fc1.weight)  # two separate MLPs
    assert p.num_parameters()["total"] == 2 * (8 * 16 + 16 + 16 * 32 + 32)


def test_calibration_matches_target_norm():
    p = make()
    users, items = torch.randn(5, 8) * 0.01, torch.randn(7, 8) * 5
    norms = p.calibrate(users, items, target_norm=3.2)
    assert norms["user"] == pytest.approx(3.2, rel=1e-4) and norms["item"] == pytest.approx(3.2, rel=1e-4)
    assert p.item(items).norm(dim=1).mean().item() == pytest.approx(3.2, rel=1e-4)


def test_save_load_round_trip_is_exact(tmp_path):
    p = make(activation="silu")
    p.calibrate(torch.randn(5, 8), torch.randn(7, 8), 2.0)
    p.save_pretrained(tmp_path / "proj")
    q = Projectors.from_pretrained(tmp_path / "proj", expect={"hidden_size": 32, "dataset": "toy"})
    assert q.config == p.config
    for (name, a), (_, b) in zip(p.state_dict().items(), q.state_dict().items()):
        assert torch.equal(a, b), name
    assert sorted(x.name for x in (tmp_path / "proj").iterdir()) == ["projectors.json", "projectors.safetensors"]


@pytest.mark.parametrize("expect, needle", [
    ({"hidden_size": 3200}, "hidden_size: checkpoint has 32, expected 3200"),
    ({"cf_dim": 64}, "cf_dim"),
    ({"dataset": "beauty"}, "dataset: checkpoint has 'toy', expected 'beauty'"),
])
def test_mismatched_checkpoint_is_refused(tmp_path, expect, needle):
    make().save_pretrained(tmp_path / "proj")
    with pytest.raises(CheckpointMismatchError, match=needle):
        Projectors.from_pretrained(tmp_path / "proj", expect=expect)


def test_unknown_activation():
    with pytest.raises(ValueError, match="Unknown activation"):
        make(activation="swish2")
