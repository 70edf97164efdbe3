"""The crop-decision pages: one question everywhere, the pixels decide, deterministic and balanced."""

from __future__ import annotations

from awares_agent.evals.benchmarks import load_benchmark
from awares_agent.evals.synthetic.decision import DECISION_QUESTION, DecisionSpec, generate_decision
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import PaperCropSet


def test_pages_are_deterministic_balanced_and_ask_one_question() -> None:
    a, b = generate_decision(40, seed=5), generate_decision(40, seed=5)
    assert [s.image.tobytes() for s in a] == [s.image.tobytes() for s in b]
    assert [s.answers for s in a] == [s.answers for s in b]
    assert {s.question for s in a} == {DECISION_QUESTION}
    assert sum(s.needs_crop for s in a) == 20
    other = generate_decision(40, seed=6)
    assert [s.answers for s in other] != [s.answers for s in a]  # held-out seeds are other pages


def test_a_small_code_needs_exactly_its_region_and_the_regions_vary() -> None:
    crops = PaperCropSet()
    regions = []
    for sample in generate_decision(60, seed=1):
        w, h = sample.image.size
        assert sample.evidence is not None
        needed = crops_covering(sample.evidence, crops, w, h)
        if sample.needs_crop:
            assert len(needed) == 1 and needed[0] in DecisionSpec().regions
            regions.append(needed[0])
            # The label behind the code is grey: visible at view resolution.
            x0, y0, _, _ = (int(v) for v in sample.evidence)
            assert sample.image.getpixel((x0 + 1, y0 + 1)) == (200, 200, 200)
        else:
            assert sample.evidence[2] - sample.evidence[0] > 100  # large: readable in the half-size view
    assert set(regions) == {"0", "1", "2", "3"}


def test_it_is_a_named_benchmark() -> None:
    samples = load_benchmark("crop-decision", limit=6, seed=3)
    assert len(samples) == 6 and samples[0].id == "dec3-00000"
