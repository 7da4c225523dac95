"""The tutorial's own code, kept with its faults, so that the lessons can run it and fix it.

The course follows a known tutorial outline (DESIGN.md). Its sample code is reproduced here in its
shape: its names, its defaults, its comments (in Chinese, each with an English gloss after `|`) and
every fault the lessons take apart. Nothing in the library imports this module; lessons 01, 03, 04,
05, 06 and 07 show a piece (`show(tutorial.MultimodalModel)`), run it on the course's models, and
fix it one measured fault at a time. The corrected versions are `vision.VisionEncoder`,
`contrastive.ContrastiveLoss`, `projection.make_projector`, `vlm.MultimodalModel`,
`vlm.generate_caption` and `vlm.visual_qa`.

Every fault, and the lesson that shows it:

| fault | lesson |
|---|---|
| `padding=True` passed to the image processor (an error in transformers 5) | 01 |
| default `openai/clip-vit-large-patch14`: 304 M parameters, 257 tokens, a download | 01 |
| `encode_image` takes `last_hidden_state[:, 0]`, the [CLS] *before* `post_layernorm` | 01, 05 |
| one [CLS] token as the image prefix: no spatial information | 05, 07 |
| the attention mask covers the T text tokens; the embeddings are 1 + T long | 05 |
| no labels, no loss, nothing frozen | 05 |
| "encoder-decoder" in its docstring: it is a decoder-only LM with a visual prefix | 05 |
| `encode_image(image)` on a PIL image instead of pixel values | 06 |
| `model.language_model.decode` (a tokenizer method); `model.tokenizer` never set | 06, 07 |
| `max_length` (prompt + answer) where `max_new_tokens` is meant | 06 |
| `early_stopping=True` with beams | 06 |
| a question in Chinese for a model whose vocabulary has none | 07 |
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ContrastiveLoss",
    "MultimodalModel",
    "ProjectionLayer",
    "VisionEncoder",
    "generate_caption",
    "show",
    "visual_qa",
]


def show(obj):
    """The source of one of the tutorial's objects, highlighted in a notebook (plain text
    elsewhere)."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


class VisionEncoder:
    # 视觉编码器 | the vision encoder
    def __init__(self, model_name="openai/clip-vit-large-patch14"):
        from transformers import CLIPImageProcessor, CLIPVisionModel

        # 加载预训练的CLIP视觉模型和图像处理器 | load the pretrained CLIP vision model and processor
        self.model = CLIPVisionModel.from_pretrained(model_name)
        self.processor = CLIPImageProcessor.from_pretrained(model_name)

    def extract_features(self, images):
        # 预处理图像 | preprocess the images
        inputs = self.processor(images=images, return_tensors="pt", padding=True)
        # 提取特征, 不计算梯度 | extract the features, without gradients
        with torch.no_grad():
            outputs = self.model(**inputs)
        # 返回池化输出和最后的隐藏状态 | return the pooled output and the last hidden state
        return {
            "pooled_output": outputs.pooler_output,
            "last_hidden_state": outputs.last_hidden_state,
        }

    def get_spatial_features(self, images):
        # 去掉CLS token, 保留空间特征 | drop the CLS token, keep the spatial features
        features = self.extract_features(images)
        return features["last_hidden_state"][:, 1:, :]


class ProjectionLayer(nn.Module):
    # 投影层: 把视觉特征映射到语言模型的维度 | projection: vision features to the LM's width
    def __init__(self, vision_dim, text_dim):
        super().__init__()
        self.projection = nn.Linear(vision_dim, text_dim)

    def forward(self, x):
        return self.projection(x)


class ContrastiveLoss(nn.Module):
    # CLIP 对比损失 | the CLIP contrastive loss
    def __init__(self, temperature=0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, image_features, text_features):
        # 归一化特征 | normalize the features
        image_features = F.normalize(image_features, dim=-1)
        text_features = F.normalize(text_features, dim=-1)
        # 计算相似度矩阵 | the similarity matrix
        logits = torch.matmul(image_features, text_features.T) / self.temperature
        # 对角线是正样本 | the diagonal holds the positive pairs
        labels = torch.arange(len(logits))
        loss_i2t = F.cross_entropy(logits, labels)
        loss_t2i = F.cross_entropy(logits.T, labels)
        return (loss_i2t + loss_t2i) / 2


class MultimodalModel(nn.Module):
    """多模态编码器-解码器模型 | a multimodal encoder-decoder model"""

    def __init__(self, vision_model_name, language_model_name):
        from transformers import CLIPVisionModel, LlamaForCausalLM

        super().__init__()
        # 视觉编码器 | the vision encoder
        self.vision_encoder = CLIPVisionModel.from_pretrained(vision_model_name)
        # 语言模型 | the language model
        self.language_model = LlamaForCausalLM.from_pretrained(language_model_name)
        # 投影层 | the projection layer
        self.projection = nn.Linear(
            self.vision_encoder.config.hidden_size, self.language_model.config.hidden_size
        )

    def encode_image(self, pixel_values):
        # 用 [CLS] token 表示整张图像 | the [CLS] token stands for the whole image
        outputs = self.vision_encoder(pixel_values=pixel_values)
        image_features = outputs.last_hidden_state[:, 0, :]
        return self.projection(image_features)

    def forward(self, pixel_values, input_ids, attention_mask):
        # 编码图像 | encode the image
        image_embeds = self.encode_image(pixel_values).unsqueeze(1)
        # 文本嵌入 | the text embeddings
        text_embeds = self.language_model.get_input_embeddings()(input_ids)
        # 拼接图像和文本 | concatenate image and text
        inputs_embeds = torch.cat([image_embeds, text_embeds], dim=1)
        # 语言模型前向 | the language model's forward pass
        outputs = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return outputs


def generate_caption(model, image, max_length=50):
    # 编码图像 | encode the image
    image_embeds = model.encode_image(image)
    # 用束搜索生成描述 | generate the caption with beam search
    outputs = model.language_model.generate(
        inputs_embeds=image_embeds.unsqueeze(1),
        max_length=max_length,
        num_beams=5,
        early_stopping=True,
    )
    # 解码 | decode
    caption = model.language_model.decode(outputs[0], skip_special_tokens=True)
    return caption


def visual_qa(model, image, question, max_length=50):
    # 编码问题 | encode the question
    inputs = model.tokenizer(question, return_tensors="pt")
    # 编码图像 | encode the image
    image_embeds = model.encode_image(image).unsqueeze(1)
    text_embeds = model.language_model.get_input_embeddings()(inputs.input_ids)
    inputs_embeds = torch.cat([image_embeds, text_embeds], dim=1)
    # 生成答案 | generate the answer
    outputs = model.language_model.generate(
        inputs_embeds=inputs_embeds, attention_mask=inputs.attention_mask, max_length=max_length
    )
    answer = model.language_model.decode(outputs[0], skip_special_tokens=True)
    return answer


# 示例 | example:
#   answer = visual_qa(model, image, "图片里有什么?")  | "what is in the picture?"
