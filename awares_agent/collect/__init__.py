"""Building the supervision automatically: judges that score answers and grounders that box the evidence.

As in the AwaRes paper's labelling recipe, a judge decides whether the low- and
full-resolution answers are right; for samples that need a crop a grounder finds the evidence box, which is
then mapped onto the crop set.
"""

from awares_agent.collect.grounders import (
    ChainGrounder,
    DatasetGrounder,
    Grounder,
    Grounding,
    OCRGrounder,
    VLMGrounder,
    make_grounder,
)
from awares_agent.collect.judges import (
    Judge,
    JudgeReplyError,
    LLMJudge,
    MetricJudge,
    Verdict,
    make_judge,
)

__all__ = [
    "ChainGrounder",
    "DatasetGrounder",
    "Grounder",
    "Grounding",
    "Judge",
    "JudgeReplyError",
    "LLMJudge",
    "MetricJudge",
    "OCRGrounder",
    "VLMGrounder",
    "Verdict",
    "make_grounder",
    "make_judge",
]
