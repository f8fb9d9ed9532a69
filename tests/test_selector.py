"""Selector: pool handling, selection, the program's selector path, save/load."""

from __future__ import annotations

import pytest
import torch

from persona_rag import PersonalizedRAG, Selector
from persona_rag.retrievers import BM25Retriever, DenseRetriever, RecencyRetriever
from tests.optimizers.key_item_task import MARKER, make_examples, reply, selector_program


def test_pool_from_names_and_mapping():
    assert Selector().names == ["none", "recency", "bm25", "dense"]
    selector = Selector(pool=["bm25", RecencyRetriever()])
    assert selector.names == ["bm25", "recency"] and isinstance(selector.pool["bm25"], BM25Retriever)
    with pytest.raises(ValueError, match="twice"):
        Selector(pool=["bm25", BM25Retriever()])
    with pytest.raises(ValueError, match="at least two"):
        Selector(pool=["bm25"])
    with pytest.raises(ValueError, match="unknown retriever"):
        Selector(pool=["bm25", "colbert"])
    with pytest.raises(ValueError, match="mode"):
        Selector(mode="during")


def test_untrained_selector_scores_members_alike_and_picks_the_first():
    selector = Selector(pool=["none", "bm25", "recency"])
    [selection] = selector.batch_select([["prompt a", "prompt b", "prompt c"]])
    assert selection.chosen == "none"
    assert len(set(selection.scores.values())) == 1
    with pytest.raises(ValueError, match="one prompt per pool member"):
        selector.batch_select([["only one"]])
    with pytest.raises(ValueError, match="answers"):
        Selector(pool=["none", "bm25"], mode="post").batch_select([["a", "b"]])


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_program_with_selector_answers_with_the_chosen_member(scripted_lm, mode, monkeypatch):
    program = selector_program(scripted_lm(reply), mode, k=2)
    examples = make_examples(4, seed=5)
    calls = []
    original = program.generator.generate_batch

    def counting(prompts, *args, **kwargs):
        calls.append(len(prompts))
        return original(prompts, *args, **kwargs)

    monkeypatch.setattr(program.generator, "generate_batch", counting)
    predictions = program.batch_forward([e.input for e in examples], [e.profile for e in examples])
    # Pre answers only the chosen prompts; Post answers every member's prompt in one batch.
    assert calls == ([4] if mode == "pre" else [12])
    for example, prediction in zip(examples, predictions):
        assert prediction.retriever == "random-a"  # untrained: the first member
        assert set(prediction.selection_scores) == {"random-a", "random-b", "none"}
        assert prediction.output == ("none" if MARKER not in prediction.prompt else example.output)
        if mode == "post":
            assert prediction.pool_outputs["none"] == "none"  # no profile item, no key item
            assert prediction.pool_outputs["random-a"] == prediction.output
    single = program(input=examples[0].input, profile=examples[0].profile)
    assert single.output == predictions[0].output and single.retriever == "random-a"


def test_selector_survives_save_and_load(tmp_path):
    program = PersonalizedRAG(
        task="LaMP-3",
        selector=Selector(
            pool={"bm25": BM25Retriever(), "tuned": DenseRetriever(encoder="all-MiniLM-L6-v2")},
            mode="post",
            model="all-MiniLM-L6-v2",
        ),
    )
    program.save(str(tmp_path / "program.json"))
    fresh = PersonalizedRAG(task="LaMP-3", selector=Selector())
    fresh.load(str(tmp_path / "program.json"))
    assert fresh.selector.mode == "post"
    assert fresh.selector.names == ["bm25", "tuned"]
    assert isinstance(fresh.selector.pool["tuned"], DenseRetriever)
    assert fresh.selector.model == "all-MiniLM-L6-v2"


def test_selector_net_keeps_the_end_of_long_prompts_and_the_whole_answer():
    from persona_rag.selector import SelectorNet

    net = SelectorNet(max_length=16)
    prompt = "item " * 40 + "question at the end"
    kept = net.tokenizer.decode(
        net.tokenizer(["answer three"], [prompt], truncation="only_second", max_length=16)["input_ids"][0]
    )
    assert "answer three" in kept and kept.endswith("question at the end [SEP]")
    assert net([prompt, "short"]).shape == (2,)


def test_selector_net_hands_the_tokenizer_only_what_it_keeps_of_a_huge_prompt():
    from persona_rag.selector import SelectorNet
    from persona_rag.tasks.truncation import MAX_CHARS_PER_TOKEN
    from tests.test_encoders import RecordingTokenizer

    net = SelectorNet(max_length=16)
    torch.nn.init.normal_(net.head.weight)  # an untrained head would score every text alike
    net.tokenizer = RecordingTokenizer(net.tokenizer)
    huge = "item " * 1_000_000 + "question at the end"  # 5 MB
    short = "item " * 40 + "question at the end"
    with torch.inference_mode():
        scores = net([huge, short], ["answer three", "answer three"])
    assert max(net.tokenizer.lengths) <= 16 * MAX_CHARS_PER_TOKEN
    assert torch.allclose(scores[0], scores[1])  # the same 16 tokens: the answer and the prompt's end


def test_freezing_keeps_only_the_last_layers_and_the_head_trainable():
    from persona_rag.selector import SelectorNet

    net = SelectorNet()
    net.freeze_below(2)
    layers = net.encoder.encoder.layer
    assert all(not p.requires_grad for p in net.encoder.embeddings.parameters())
    assert all(not p.requires_grad for layer in layers[:-2] for p in layer.parameters())
    assert all(p.requires_grad for layer in layers[-2:] for p in layer.parameters())
    assert net.head.weight.requires_grad
    net(["a prompt", "another"], ["4", "5"]).sum().backward()
    assert layers[-1].output.dense.weight.grad is not None and layers[0].output.dense.weight.grad is None
    with pytest.raises(ValueError, match="has 6 layers"):
        net.freeze_below(7)


def test_frozen_layers_stay_in_eval_mode_while_the_top_layers_train():
    from persona_rag.selector import SelectorNet

    net = SelectorNet()
    net.freeze_below(2)
    net.train()
    layers = net.encoder.encoder.layer
    assert not net.encoder.embeddings.training and not any(layer.training for layer in layers[:-2])
    assert all(layer.training for layer in layers[-2:]) and net.head.training
    net.eval()
    assert not any(layer.training for layer in layers)


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_cached_frozen_layers_give_the_scores_and_gradients_of_the_whole_encoder(mode):
    from persona_rag.selector import SelectorNet

    prompts = ["a short prompt", "item " * 30 + "a longer prompt that pads the batch", "a short prompt"]
    outputs = ["4", "the answer", "4"] if mode == "post" else None
    plain, cached = SelectorNet(), SelectorNet()
    for net in (plain, cached):  # the same non-zero head: an untrained one scores all alike
        torch.manual_seed(0)
        torch.nn.init.normal_(net.head.weight)
    plain.freeze_below(2)
    cached.freeze_below(2, cache=True)
    with torch.inference_mode():
        assert torch.allclose(plain.eval()(prompts, outputs), cached.eval()(prompts, outputs), atol=1e-5)
    assert len(cached._frozen_cache) == 2  # one entry per distinct candidate, filled once
    grads = []
    for net in (plain, cached):
        net.train()
        torch.manual_seed(1)  # the same dropout masks in the trainable layers
        net(prompts, outputs).sum().backward()
        grads.append(net.encoder.encoder.layer[-2].output.dense.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
    assert len(cached._frozen_cache) == 2


def test_the_network_reads_each_member_name_after_its_prompt_and_old_saves_load_without():
    selector = Selector(pool=["none", "bm25"])
    assert selector.candidate_texts(["p1", "p2"]) == ["p1\nretriever: none", "p2\nretriever: bm25"]
    state = selector.dump_state()
    assert Selector(pool=["none", "bm25"]).load_state(state).name_members is True
    state.pop("name_members")  # a selector saved before it read names was trained on bare prompts
    old = Selector(pool=["none", "bm25"]).load_state(state)
    assert old.name_members is False and old.candidate_texts(["p1", "p2"]) == ["p1", "p2"]
    with pytest.raises(ValueError):
        selector.candidate_texts(["only one"])  # one prompt per member, in pool order
