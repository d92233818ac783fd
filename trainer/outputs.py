"""Names of the training variants and of the graph outputs each one has.

`app.contract` names the two outputs that every model has, `logit` and
`expected_watch_time_s`. The click probability is an output of the
`weighted+click` variant only.
"""

from __future__ import annotations

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT

CLICK_PROBABILITY_OUTPUT = "click_probability"

WEIGHTED = "weighted"
RESAMPLED = "resampled"
POISSON = "poisson"
WEIGHTED_CLICK = "weighted+click"
WEIGHTED_MLP = "weighted-mlp"

VARIANTS: tuple[str, ...] = (WEIGHTED, RESAMPLED, POISSON, WEIGHTED_CLICK, WEIGHTED_MLP)
"""Every training variant, in the order reports list them."""

_LOGIT_MEANINGS = {
    WEIGHTED: "Wx + b of the logistic regression weighted by watch time",
    RESAMPLED: "Wx + b of the logistic regression on replicated positives, "
    "with ln(unit) added to b",
    POISSON: "Wx + b of the Poisson regression, the log of the expected watch time",
    WEIGHTED_CLICK: "Wx + b of the logistic regression weighted by watch time",
    WEIGHTED_MLP: "output of the ReLU network trained with the weighted logistic loss",
}

_WATCH_TIME_MEANINGS = {
    WEIGHTED: "exp(logit), the odds, which estimate E[T·click] / (1 - p)",
    RESAMPLED: "exp(logit), the odds, which estimate E[T·click] / (1 - p)",
    POISSON: "exp(logit), the expected watch time of the impression",
    WEIGHTED_CLICK: "exp(logit) · (1 - click_probability), the expected watch "
    "time of the impression",
    WEIGHTED_MLP: "exp(logit), the odds, which estimate E[T·click] / (1 - p)",
}


def output_descriptions(variant: str) -> dict[str, str]:
    """Describe each graph output of `variant`, in graph order."""
    descriptions = {LOGIT_OUTPUT: _LOGIT_MEANINGS[variant]}
    if variant == WEIGHTED_CLICK:
        descriptions[CLICK_PROBABILITY_OUTPUT] = (
            "sigmoid of the click model's logit, the click probability p"
        )
    descriptions[WATCH_TIME_OUTPUT] = (
        _WATCH_TIME_MEANINGS[variant] + ", in seconds; candidates are ranked by it"
    )
    return descriptions


def check_variant(variant: str) -> None:
    """Raise ValueError unless `variant` names a training variant."""
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}"
        )
