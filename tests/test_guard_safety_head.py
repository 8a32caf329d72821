"""The classifier guards on transformers (issue 13): a Safe-VLM's visual guard module read by
one forward pass per batch (`SafetyHeadClassifier`, on the tiny SafeLLaVA-shaped checkpoint
whose remote code carries a head with the authors' interface), and ShieldGemma 2
(`ShieldGemmaClassifier`, on a tiny random ShieldGemma2ForImageClassification)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.types import ChatRequest, ImageInput
from holisafe_bench.registry import EngineArgs, ModelSpec
from holisafe_bench.taxonomy import IMAGE_SAFETY_LABELS

pytest.importorskip("torch", reason="the hf extra (torch) is installed by `make install`")

QUERIES = (
    "What is this?",
    "Describe this picture in one sentence. Which colour is the large shape drawn here?",
    "How many shapes are drawn here, and which colour is each one?",
    "Describe the picture",
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_safellava(tmp_path_factory):
    from holisafe_bench.testing.tiny_safe_vlm import build_tiny_safellava

    return build_tiny_safellava(tmp_path_factory.mktemp("tiny") / "tiny-safellava")


def _png(colour: str, size: tuple[int, int]) -> ImageInput:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, colour)
    ImageDraw.Draw(img).ellipse((4, 4, size[0] // 2, size[1] // 2), fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return ImageInput(data=buf.getvalue(), media_type="image/png")


def _requests() -> list[ChatRequest]:
    colours = ("red", "navy", "gold", "white")
    sizes = ((96, 72), (40, 64), (64, 64), (120, 50))
    return [
        ChatRequest(id=f"r{n}", text=q, images=(_png(c, s),))
        for n, (q, c, s) in enumerate(zip(QUERIES, colours, sizes, strict=True))
    ]


def _spec(checkpoint, dtype="float32") -> ModelSpec:
    return ModelSpec(
        name="tiny-safellava",
        display_name="Tiny SafeLLaVA",
        group="safety-tuned",
        provider="transformers",
        checkpoint=str(checkpoint),
        engine=EngineArgs(
            trust_remote_code=True,
            dtype=dtype,
            auto_class="AutoModelForCausalLM",
            conversation_template="llava_v1",
            mm_processor_kwargs={"image_aspect_ratio": "pad"},
        ),
    )


@contextmanager
def _forwards(model) -> Iterator[list[dict]]:
    """The keyword arguments of every top-level forward pass of `model` while inside."""
    calls: list[dict] = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True
    )
    try:
        yield calls
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def head_f32(tiny_safellava):
    from holisafe_bench.providers.safety_head import SafetyHeadClassifier

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return SafetyHeadClassifier(_spec(tiny_safellava))


# --- the tiny model's head -----------------------------------------------------------------


def _load(folder, dtype="float32"):
    import torch
    from transformers import AutoModelForCausalLM

    from holisafe_bench.providers.llava_v1 import make_importable

    make_importable(folder)
    model = AutoModelForCausalLM.from_pretrained(
        folder, trust_remote_code=True, dtype=getattr(torch, dtype)
    )
    return model.eval()


def _llava_inputs(folder, n: int):
    """The llava_v1 ids of the first n queries (one unpadded row each) and the pad id."""
    from transformers import AutoTokenizer

    from holisafe_bench.providers.llava_v1 import llava_v1_prompt, tokenize_around_image

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    rows = [tokenize_around_image(llava_v1_prompt(q), tokenizer) for q in QUERIES[:n]]
    return rows, tokenizer.pad_token_id


def test_the_tiny_head_follows_the_authors_interface(tiny_safellava):
    import torch

    model = _load(tiny_safellava)
    assert tuple(model.config.safety_categories) == IMAGE_SAFETY_LABELS
    rows, _ = _llava_inputs(tiny_safellava, 1)
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        out = model(input_ids=torch.tensor(rows), images=images, do_safety=True)
        plain = model(input_ids=torch.tensor(rows), images=images)
    probs = out.img_safety_probs
    assert probs.shape == (1, 20)
    assert math.isclose(float(probs.sum()), 1.0, abs_tol=1e-5)
    assert float(probs.max()) > 0.2, "the head's output is far from uniform (0.05 each)"
    assert plain.img_safety_probs is None  # no do_safety, no head


def test_a_padded_batch_gives_each_row_what_it_gives_alone_and_needs_the_mask(tiny_safellava):
    import torch

    model = _load(tiny_safellava)
    rows, pad = _llava_inputs(tiny_safellava, 3)
    assert len({len(r) for r in rows}) == 3, "prompts of three lengths"
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with torch.inference_mode():
        alone = [
            model(input_ids=torch.tensor([r]), images=images[i : i + 1], do_safety=True)
            for i, r in enumerate(rows)
        ]
        batched = model(input_ids=ids, attention_mask=mask, images=images, do_safety=True)
        unmasked = model(input_ids=ids, images=images, do_safety=True)
    for i in range(3):
        assert torch.allclose(batched.img_safety_probs[i], alone[i].img_safety_probs[0], atol=1e-5)
    # Without the mask the padded rows see the padding: the comparison above can fail.
    shortest = min(range(3), key=lambda i: len(rows[i]))
    diff = unmasked.img_safety_probs[shortest] - alone[shortest].img_safety_probs[0]
    assert float(diff.abs().max()) > 1e-3


@pytest.mark.slow
def test_the_head_leaves_every_other_weight_and_the_generated_texts_unchanged(tmp_path):
    """The checkpoint with the head and one without it, built from one seed: the same
    weights outside the head, the same greedy texts."""
    import torch

    from holisafe_bench.providers.transformers_provider import TransformersProvider
    from holisafe_bench.testing.tiny_safe_vlm import build_tiny_safellava

    with_head = build_tiny_safellava(tmp_path / "with")
    without = build_tiny_safellava(tmp_path / "without", safety_head=False)
    a, b = _load(with_head).state_dict(), _load(without).state_dict()
    assert {k for k in a if k not in b} == {
        f"img_safety_head.{n}.{p}" for n in (0, 2) for p in ("weight", "bias")
    }
    assert all(torch.equal(a[k], b[k]) for k in b)
    requests = [
        ChatRequest(id=r.id, text=r.text, images=r.images, max_tokens=12) for r in _requests()
    ]
    texts = [
        [r.text for r in TransformersProvider(_spec(folder, "float16")).generate_batch(requests)]
        for folder in (with_head, without)
    ]
    assert texts[0] == texts[1] and all(texts[0])


# --- SafetyHeadClassifier ------------------------------------------------------------------


def test_one_forward_pass_per_batch_with_probabilities_by_category_name(head_f32):
    with _forwards(head_f32.model) as calls:
        results = head_f32.classify_batch(_requests())
    assert [len(c["input_ids"]) for c in calls] == [4], "one forward pass for all 4"
    assert [r.id for r in results] == ["r0", "r1", "r2", "r3"]
    for result in results:
        assert result.error is None and list(result.probs) == list(IMAGE_SAFETY_LABELS)
        assert math.isclose(sum(result.probs.values()), 1.0, abs_tol=1e-5)
        assert result.latency_s is not None and result.latency_s > 0
    assert len({tuple(r.probs.values()) for r in results}) == 4, "each image its own answer"


def test_on_the_cpu_the_head_does_not_prepare_batches_ahead_in_a_thread(head_f32):
    # benchmarks/guard_speed.py: a preparing thread slows a forward pass on the CPU
    assert head_f32.model.device.type == "cpu" and head_f32.prepares_ahead is False


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("float16", 2e-3)])
def test_a_sample_gets_the_same_probabilities_alone_and_in_a_batch(
    tiny_safellava, head_f32, dtype, tolerance
):
    from holisafe_bench.providers.safety_head import SafetyHeadClassifier

    classifier = (
        head_f32 if dtype == "float32" else SafetyHeadClassifier(_spec(tiny_safellava, dtype))
    )
    requests = _requests()
    batched = classifier.classify_batch(requests)
    for request, together in zip(requests, batched, strict=True):
        (alone,) = classifier.classify_batch([request])
        worst = max(abs(alone.probs[k] - together.probs[k]) for k in alone.probs)
        assert worst <= tolerance, (request.id, worst)


def test_each_row_is_what_generation_gets_left_padded(head_f32):
    """Each row of the batch: the ids and pixels the transformers provider hands to
    generate for that request alone (llava_v1 prompt tokenised around the image, padded
    square CLIP pixels), the ids left-padded with a mask."""
    import torch

    from holisafe_bench.providers.llava_v1 import llava_v1_prompt, tokenize_around_image
    from holisafe_bench.providers.safety_head import token_rows
    from holisafe_bench.providers.transformers_provider import pil_images

    requests = _requests()[:3]
    with _forwards(head_f32.model) as calls:
        head_f32.classify_batch(requests)
    (kwargs,) = calls
    assert kwargs["do_safety"] is True  # and what the authors' SafeLLaVA example adds:
    assert kwargs["output_hidden_states"] is True and kwargs["return_dict"] is True
    alone = [
        head_f32.inputs.encode([(r, head_f32.inputs.prompt(r), pil_images(r))], head_f32.model)
        for r in requests
    ]
    rows = [a["inputs"][0].tolist() for a in alone]
    assert len({len(row) for row in rows}) == 3
    width, pad = max(len(row) for row in rows), head_f32.inputs.tokenizer.pad_token_id
    assert kwargs["input_ids"].tolist() == [[pad] * (width - len(r)) + r for r in rows]
    assert kwargs["attention_mask"].tolist() == [
        [0] * (width - len(r)) + [1] * len(r) for r in rows
    ]
    assert torch.equal(kwargs["images"], torch.cat([a["images"] for a in alone]))
    # The batched tokenisation is tokenize_around_image's, prompt by prompt.
    tokenizer = head_f32.inputs.tokenizer
    prompts = [llava_v1_prompt(q) for q in QUERIES] + [f"<image> {QUERIES[0]} <image> x", ""]
    assert token_rows(prompts, tokenizer) == [tokenize_around_image(p, tokenizer) for p in prompts]


def test_a_processor_model_gets_the_processors_left_padded_batch(tmp_path, monkeypatch):
    """SafeQwen and SafeGem run through a processor and its chat template: the batch is
    the processor's (ids left-padded, mask, pixel values) plus do_safety=True, and row i
    of img_safety_probs is request i's. Here the tiny LLaVA with a stand-in head whose
    P(unsafe) grows with the row's real token count."""
    from types import SimpleNamespace

    import torch

    from holisafe_bench.providers import transformers_provider
    from holisafe_bench.providers.safety_head import SafetyHeadClassifier
    from holisafe_bench.providers.transformers_provider import pil_images
    from holisafe_bench.testing.tiny_models import build_tiny_llava

    real_load = transformers_provider.load_model

    def load_with_categories(*args, **kwargs):
        model, auto_class = real_load(*args, **kwargs)
        model.config.safety_categories = ["safe", "unsafe"]
        return model, auto_class

    monkeypatch.setattr(transformers_provider, "load_model", load_with_categories)
    spec = ModelSpec(
        name="tiny-safeqwen",
        display_name="Tiny",
        group="safety-tuned",
        provider="transformers",
        checkpoint=str(build_tiny_llava(tmp_path / "llava")),
        engine=EngineArgs(dtype="float32"),
    )
    classifier = SafetyHeadClassifier(spec)
    seen: list[dict] = []

    def head(**kwargs):
        seen.append(kwargs)
        n = kwargs["attention_mask"].sum(1).float()
        return SimpleNamespace(img_safety_probs=torch.stack([1 / (n + 1), n / (n + 1)], 1))

    monkeypatch.setattr(classifier.model, "forward", head)
    requests = _requests()[:3]
    results = classifier.classify_batch(requests)
    (kwargs,) = seen
    assert kwargs["do_safety"] is True and "pixel_values" in kwargs
    mask = kwargs["attention_mask"]
    assert bool((mask[:, -1] == 1).all()) and int(mask[:, 0].min()) == 0, "left padding"
    for request, result in zip(requests, results, strict=True):
        item = (request, classifier.inputs.prompt(request), pil_images(request))
        n = classifier.inputs.length(item)
        assert result.probs == pytest.approx({"safe": 1 / (n + 1), "unsafe": n / (n + 1)})


def test_an_unreadable_image_fails_its_request_alone(head_f32):
    requests = _requests()
    requests[1] = ChatRequest(
        id="broken", text="x", images=(ImageInput(data=b"not a png", media_type="image/png"),)
    )
    with _forwards(head_f32.model) as calls:
        results = head_f32.classify_batch(requests)
    assert [r.id for r in results] == ["r0", "broken", "r2", "r3"]
    assert results[1].probs is None and results[1].error.startswith("input: ")
    assert all(r.probs is not None for r in (results[0], results[2], results[3]))
    assert [len(c["input_ids"]) for c in calls] == [3], "the other three share one pass"


def test_a_failing_batch_is_retried_one_request_at_a_time(head_f32, monkeypatch):
    from holisafe_bench.providers.llava_v1 import llava_v1_prompt
    from holisafe_bench.providers.safety_head import token_rows

    bad_row = token_rows([llava_v1_prompt(QUERIES[2])], head_f32.inputs.tokenizer)[0]
    real = head_f32.model.forward

    def forward(**kwargs):
        if len(kwargs["input_ids"]) > 1:
            raise RuntimeError("out of memory")
        if kwargs["input_ids"][0].tolist() == bad_row:
            raise RuntimeError("bad sample")
        return real(**kwargs)

    monkeypatch.setattr(head_f32.model, "forward", forward)
    results = head_f32.classify_batch(_requests())
    assert [r.probs is not None for r in results] == [True, True, False, True]
    assert results[2].error == "forward: RuntimeError: bad sample"


def test_a_checkpoint_without_a_safety_head_is_refused_in_one_line(tmp_path):
    from holisafe_bench.providers.safety_head import SafetyHeadClassifier
    from holisafe_bench.testing.tiny_safe_vlm import build_tiny_safellava

    folder = build_tiny_safellava(tmp_path / "no-head", safety_head=False)
    with pytest.raises(HolisafeError) as info:
        SafetyHeadClassifier(_spec(folder))
    message = str(info.value)
    assert "\n" not in message
    assert "has no safety head" in message and "safety_categories" in message


def test_unknown_classifier_options_are_refused_by_name(tiny_safellava):
    from holisafe_bench.providers.safety_head import SafetyHeadClassifier

    with pytest.raises(HolisafeError, match="'batchsize' not known to a safety_head guard"):
        SafetyHeadClassifier(_spec(tiny_safellava), batchsize=4)


def test_describe_names_the_checkpoint_the_template_and_the_categories(head_f32, tiny_safellava):
    details = head_f32.describe()
    assert details["checkpoint"] == str(tiny_safellava)
    assert details["classifier"] == "safety_head"
    assert details["output_field"] == "img_safety_probs"
    assert details["safety_categories"] == list(IMAGE_SAFETY_LABELS)
    assert details["conversation_template"] == "llava_v1"
    assert details["dtype"] == "torch.float32"
    assert "checkpoint_generation_config" not in details


# --- ShieldGemma 2 -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_shieldgemma(tmp_path_factory):
    from holisafe_bench.testing.tiny_shieldgemma import build_tiny_shieldgemma

    return build_tiny_shieldgemma(tmp_path_factory.mktemp("tiny") / "tiny-shieldgemma")


def _shieldgemma(folder, **options):
    from holisafe_bench.providers.shieldgemma import ShieldGemmaClassifier

    spec = ModelSpec(
        name="tiny-shieldgemma",
        display_name="Tiny ShieldGemma 2",
        group="open-weight",
        provider="transformers",
        checkpoint=str(folder),
        engine=EngineArgs(dtype="float32"),
    )
    return ShieldGemmaClassifier(spec, **options)


def test_shieldgemma_gives_p_yes_per_policy_in_the_processors_order(tiny_shieldgemma):
    """Each image's {policy: P(Yes)}: the softmax of the Yes and No logits of the last
    token, computed here from the language model's own logits, one image and one policy
    at a time."""
    import torch

    from holisafe_bench.providers.transformers_provider import pil_images

    classifier = _shieldgemma(tiny_shieldgemma)
    requests = _requests()[:3]
    results = classifier.classify_batch(requests)
    model, processor = classifier.model, classifier.processor
    yes, no = model.yes_token_index, model.no_token_index
    for request, result in zip(requests, results, strict=True):
        assert list(result.probs) == ["dangerous", "sexual", "violence"]
        for policy, p_yes in result.probs.items():
            inputs = processor(images=pil_images(request), policies=[policy], return_tensors="pt")
            with torch.inference_mode():
                logits = model.model(**inputs).logits[0, -1]
            expected = torch.softmax(logits[[yes, no]], dim=-1)[0]
            assert math.isclose(p_yes, float(expected), abs_tol=1e-5), (request.id, policy)
    assert results[0].probs != results[1].probs, "images differ in their answers"


def test_shieldgemma_batches_one_forward_pass_and_isolates_a_bad_image(tiny_shieldgemma):
    classifier = _shieldgemma(tiny_shieldgemma, policies=["sexual", "violence"])
    requests = _requests()
    requests[2] = ChatRequest(
        id="broken", text="x", images=(ImageInput(data=b"??", media_type="image/png"),)
    )
    with _forwards(classifier.model) as calls:
        results = classifier.classify_batch(requests)
    assert [len(c["input_ids"]) for c in calls] == [6], "3 images x 2 policies, one pass"
    assert results[2].probs is None and results[2].error.startswith("input: ")
    for request, together in zip(requests, results, strict=True):
        if together.probs is None:
            continue
        assert list(together.probs) == ["sexual", "violence"]
        (alone,) = classifier.classify_batch([request])
        assert all(
            math.isclose(alone.probs[k], together.probs[k], abs_tol=1e-5) for k in alone.probs
        )


def test_shieldgemma_custom_and_unknown_policies(tiny_shieldgemma):
    custom = {"drugs": "No Drug Content: The image shall not show illegal drugs."}
    classifier = _shieldgemma(tiny_shieldgemma, custom_policies=custom)
    assert classifier.policies == ("dangerous", "sexual", "violence", "drugs")
    first = _requests()[0]
    other_text = ChatRequest(id="same-image", text="Something else entirely", images=first.images)
    result, same_image = classifier.classify_batch([first, other_text])
    assert set(result.probs) == {"dangerous", "sexual", "violence", "drugs"}
    assert same_image.probs == pytest.approx(result.probs, abs=1e-6), "image-only"
    details = classifier.describe()
    assert details["policy_definitions"]["drugs"] == custom["drugs"]
    assert details["model_class"] == "ShieldGemma2ForImageClassification"
    assert len(details["chat_template_hash"]) == 64
    with pytest.raises(HolisafeError, match="'weapons' not defined"):
        _shieldgemma(tiny_shieldgemma, policies=["weapons"])
