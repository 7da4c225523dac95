"""The multimodal model: vision encoder -> projection -> a Llama language model reading
`inputs_embeds`.

Lessons 05-07 teach it. The token sequence the language model reads, for one example:

    [image tokens: N projected vectors] [BOS] question [EOS] answer [EOS]
     attention mask: 1 on every one of them (the image positions too), 0 on padding
     labels:         -100 on the image and the prompt; the answer's ids and its [EOS] (the loss is
     only there)

`image_tokens="patches"` feeds the N patch tokens of `last_hidden_state` (without [CLS]); with
`merge=m` each m x m block of them is first concatenated into one token (pixel shuffle, as nanoVLM
and SmolVLM do), so N / m^2 tokens reach the projector. `"cls"` feeds one token, the post-layernorm
[CLS] (`pooler_output`).
Captioning is the same with an empty question.

The shipped `shapes-vlm-patches` merges 3 x 3 blocks: 9 image tokens, one per cell of the scene.
With all 81 patch tokens (merge=1) the tiny language model learned to caption but stalled on
questions that must find an object by its attributes (3000 steps: position 76 %, exists 44 %,
questions overall 74 %); with one whole object per token it learns them.

Doing right what the tutorial's sample code gets wrong: all patch tokens, not one [CLS]; the image
positions in the attention mask; labels -100 outside the answer; decoding through the tokenizer, not
the model; `max_new_tokens`, not `max_length`. Batches are left-padded for generation, so every
prompt ends where generation starts.

The package reads top-down: `inputs` (what the language model reads), `model` (`VLMConfig`,
`MultimodalModel`, `load`), `loss` (`answer_loss`), `decoding` (one generate path;
`generate_caption`, `visual_qa`).
How the shipped VLMs are trained is a recipe (`mmcourse.recipes.shapes_vlm`); how they are measured,
`mmcourse.metrics`.
`llava` sets LLaVA's layout beside the course's (`<image>` expanded to N ids, labels on the
assistant's turns) and turns a course model with merge=1 into transformers'
`LlavaForConditionalGeneration` on the same weights (`to_llava`).
"""

from __future__ import annotations

from . import decoding, inputs, llava, loss, model
from .decoding import *
from .inputs import *
from .llava import *
from .loss import *
from .model import *

__all__ = [*inputs.__all__, *model.__all__, *loss.__all__, *decoding.__all__, *llava.__all__]
