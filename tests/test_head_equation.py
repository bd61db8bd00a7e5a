"""Chapter 4.5's equation of the item-token head is the score the cpu profile's model computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmrec_lite import templates as T
from llmrec_lite.data import load_dataset
from llmrec_lite.fusion import FusionModel, head_facts
from llmrec_lite.profiles import get_profile
from llmrec_lite.prompts import PromptEncoder
from llmrec_lite.runs import head_settings
from llmrec_lite.settings import TrainSettings
from llmrec_lite.split import LeaveOneOutSplit

from fusion_fixtures import random_factors, tiny_backbone


@pytest.fixture
def split(s3rec_file):
    return LeaveOneOutSplit.from_data(load_dataset(path=s3rec_file))


def cpu_head_model(split) -> FusionModel:
    users, items = random_factors(split.num_users, split.num_items)
    return FusionModel(tiny_backbone(), users, items, output="item-token", projector_config={"hidden_dim": 16},
                       **head_settings(TrainSettings.from_profile(get_profile("cpu"), 2)))


def test_the_cpu_head_is_the_chapters_equation(split):
    """s_j = cos(h, f_i(v_j)) / T + w <u, v_j> + b [j in H] + c [j in K], term by term."""
    model = cpu_head_model(split)
    with torch.no_grad():  # as if trained: every learned number away from its start
        model.item_logit_log_scale.fill_(2.5)
        model.item_cf_weight.fill_(0.7)
        model.item_history_bias.fill_(0.3)
        model.item_known_bias.fill_(-0.2)
    encoder = PromptEncoder.for_backbone(split, model.backbone, max_history=2, with_embeddings=True)
    users = range(split.num_users)
    batch = encoder.batch(T.get_template("sequential", 0), users)
    with torch.no_grad():
        scores = model.score_items(batch)
        h = model.last_hidden(batch).float()
        e = model.projectors.item(model.item_factors).float()
    temperature = 1 / torch.exp(torch.tensor(2.5))
    llm = F.normalize(h, dim=-1) @ F.normalize(e, dim=-1).T / temperature
    cf = model.user_factors[torch.as_tensor(list(users))] @ model.item_factors.T
    shown = torch.zeros_like(scores)
    known = torch.zeros_like(scores)
    for u in users:
        history = split.history(u)
        shown[u, torch.as_tensor(history[-2:])] = 1  # the prompt shows the last max_history items
        known[u, torch.as_tensor(history)] = 1  # every item consumed before the target
    torch.testing.assert_close(scores, llm + 0.7 * cf + 0.3 * shown - 0.2 * known, rtol=1e-4, atol=1e-4)
    assert (known >= shown).all() and (known > shown).any()  # the known offset reaches past the prompt


def test_head_facts_name_the_cpu_profiles_switches(split):
    facts = head_facts(cpu_head_model(split))
    cpu = get_profile("cpu")
    assert facts == {"head_logit": "cosine", "head_temperature": cpu.logit_temperature, "head_cf": "used",
                     "head_history": "used", "head_known": "used", "head_readout": "not used",
                     "head_dense": cpu.dense_weight}
    users, items = random_factors(split.num_users, split.num_items)
    plain = head_facts(FusionModel(tiny_backbone(), users, items, output="item-token", cf_term=True,
                                   use_embeddings=False))
    assert plain["head_logit"] == "dot" and plain["head_temperature"] == "not used: dot logits"
    assert plain["head_cf"] == "not used"  # without CF embeddings the switch does nothing: it reads as off
