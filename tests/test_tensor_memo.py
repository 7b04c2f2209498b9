"""TensorMemo: an answer about a tensor's values is computed once per live owner and version."""
import weakref

import pytest
import torch

from sparse_seq2seq.tensor_memo import TensorMemo

pytestmark = pytest.mark.unit


def _counting(value):
    calls = []
    return calls, lambda: calls.append(1) or value


def test_views_of_one_owner_share_an_answer_and_a_write_renews_it():
    memo, base = TensorMemo(), torch.zeros(8, 8)
    calls, compute = _counting("answer")
    assert [memo.get(base[:4, :4], None, compute) for _ in range(3)] == ["answer"] * 3
    assert len(calls) == 1
    memo.get(base[:5, :5], None, compute)  # another shape: its own answer
    memo.get(base[:4, :4], "other", compute)  # another question: its own answer
    assert len(calls) == 3
    base.add_(1)
    memo.get(base[:4, :4], None, compute)
    assert len(calls) == 4


def test_an_entry_whose_owner_is_not_this_tensor_is_not_used():
    """A key that matches but whose kept owner is another (or a dead) tensor, as when a new
    tensor is allocated at a freed address: computed afresh."""
    memo, tensor, other = TensorMemo(), torch.zeros(3), torch.zeros(3)
    memo.get(tensor, None, lambda: "first")
    (key,) = memo._entries
    memo._entries[key] = (weakref.ref(other), "stale")
    assert memo.get(tensor, None, lambda: "fresh") == "fresh"


def test_inference_tensors_are_computed_every_time_and_the_memo_stays_bounded():
    memo = TensorMemo(size=4)
    calls, compute = _counting(True)
    with torch.inference_mode():
        mask = torch.zeros(2, 2)
        assert memo.get(mask, None, compute) and memo.get(mask, None, compute)
    assert len(calls) == 2
    keep = [torch.zeros(1) for _ in range(10)]
    for t in keep:
        memo.get(t, None, compute)
    assert len(memo._entries) <= 4
