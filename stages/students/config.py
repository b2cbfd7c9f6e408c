"""The pydantic models of the students' params sections: recipes, the keys they share, the flat settings of one
training run (`training()`), which is what a student's train() takes, and the decode settings the stages that
predict apply (`predict`: export, evaluate, tag), kept out of training so changing them retrains nothing."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from stages.core.params import Fraction, Section


class GlinerRecipe(Section):
    base_model: str
    learning_rate: float = Field(gt=0)
    others_learning_rate: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    revision: str | None  # pins a hub base model to a commit (None: a local encoder)


class SpanMarkerRecipe(Section):
    base_model: str
    entity_label: str
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    revision: str | None


class TrainingShared(Section):
    """The keys every recipe of a student shares."""

    weight_decay: float = Field(ge=0)
    warmup_ratio: float = Fraction
    patience: int = Field(ge=0)
    # labels.records.UnreviewedRule, spelt out: importing it would make every stage that reads this file depend on
    # labels/records.py (mypy holds the two to the same values where the finetune stage passes one to the other)
    unreviewed: Literal["keep", "drop", "pretrain"]
    device: Literal["auto", "cpu", "cuda"]
    seed: int
    min_valid_f1: float = Fraction  # the finetune stage writes no model whose best valid F1 is below it


class GlinerShared(TrainingShared):
    entity_label: str = Field(min_length=1)
    max_width: int = Field(gt=0)
    others_weight_decay: float = Field(ge=0)
    focal_loss_alpha: float = Field(ge=-1, le=1)  # GLiNER: -1 turns the alpha term off
    focal_loss_gamma: float = Field(ge=0)


class SpanMarkerShared(TrainingShared):
    model_max_length: int = Field(gt=0)
    marker_max_length: int = Field(gt=0)
    entity_max_length: int = Field(gt=0)


class GlinerTraining(GlinerShared, GlinerRecipe):
    """One GLiNER training run: the chosen recipe with the shared keys (what gliner_student.train takes)."""


class SpanMarkerTraining(SpanMarkerShared, SpanMarkerRecipe):
    """One SpanMarker training run: the chosen recipe with the shared keys."""


class ChoosesRecipe(Section):
    """A finetune section: one switch (`recipe`) picks a whole recipe; `training()` is that recipe, flat."""

    TRAINING: ClassVar[type[GlinerTraining] | type[SpanMarkerTraining]]  # the flat model training() builds
    recipe: str
    recipes: dict[str, Any]

    @model_validator(mode="after")
    def known_recipe(self):
        if self.recipe not in self.recipes:
            raise ValueError(f"recipe {self.recipe!r} is not one of {sorted(self.recipes)}")
        return self

    def training(self) -> GlinerTraining | SpanMarkerTraining:
        shared = self.model_dump(exclude={"recipe", "recipes"})
        return self.TRAINING(**shared, **self.recipes[self.recipe].model_dump())


class FinetuneGlinerParams(ChoosesRecipe, GlinerShared):
    SECTION = "finetune_gliner"
    TRAINING: ClassVar[type[GlinerTraining]] = GlinerTraining
    recipes: dict[str, GlinerRecipe]


class FinetuneSpanMarkerParams(ChoosesRecipe, SpanMarkerShared):
    SECTION = "finetune_spanmarker"
    TRAINING: ClassVar[type[SpanMarkerTraining]] = SpanMarkerTraining
    recipes: dict[str, SpanMarkerRecipe]


class GlinerDecode(Section):
    threshold: float = Field(gt=0, lt=1)  # GLiNER keeps the spans scoring at least this


class SpanMarkerDecode(Section):
    """None: SpanMarker decodes as its model does (the best-scoring non-overlapping spans)."""


class PredictParams(Section):
    """How each student decodes where it predicts, by registry name (export writes it into the exported folder's
    predict settings; evaluate and tag apply it to the folders they load)."""

    SECTION = "predict"
    gliner: GlinerDecode
    spanmarker: SpanMarkerDecode

    def decode(self, student: str) -> dict[str, Any]:
        """The decode settings of a student by registry name, as its load() and zero_shot() take them."""
        settings = getattr(self, student)
        assert isinstance(settings, Section), student  # a field per registered student
        return settings.model_dump()
