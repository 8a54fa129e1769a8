"""Reading other tools' parameters: Fooocus (JSON in ``parameters``), InvokeAI (``invokeai_metadata`` and
InvokeAI 2's ``sd-metadata``) and ComfyUI (the ``prompt`` graph: best effort, it is a program, not a record).

Untrusted input: every reader checks types and ranges through :func:`engine.gallery.parameters.finish` and raises
only :class:`MetadataError`. Safe on any thread.
"""

from __future__ import annotations

from typing import Any, Iterable

from .. import samplers
from .parameters import ImageParameters, finish, load_json
from .pngtext import MetadataError

#: Most graph nodes visited while reading a ComfyUI graph.
MAX_GRAPH_VISITS = 2_000


def _comfy_sampler(sampler: Any, schedule: Any, warnings: list[str]) -> str | None:
    """ComfyUI / Fooocus style names ("dpmpp_2m", "karras") as a Darkroom sampler."""
    if not isinstance(sampler, str):
        return None
    sched = schedule.strip().lower() if isinstance(schedule, str) else ""
    name, warning = samplers.from_a1111(sampler, "Karras" if sched == "karras" else (sched or "Uniform"))
    if warning:
        warnings.append(warning)
    return name


def parse_fooocus(text: str) -> ImageParameters:
    data = load_json(text, "Fooocus parameters")
    if not isinstance(data, dict):
        raise MetadataError("malformed", "The Fooocus parameters in this image are damaged.")
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    for key, name in (("prompt", "prompt"), ("negative_prompt", "negative_prompt"), ("steps", "steps"),
                      ("guidance_scale", "cfg"), ("seed", "seed")):
        if key in data:
            raw[name] = data[key]
    res = data.get("resolution")
    if isinstance(res, str) and len(res) < 40:
        parts = [p.strip() for p in res.strip("()[] ").split(",")]
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            raw["width"], raw["height"] = int(parts[0]), int(parts[1])
    elif isinstance(res, list) and len(res) == 2:
        raw["width"], raw["height"] = res
    name = _comfy_sampler(data.get("sampler"), data.get("scheduler"), warnings)
    if name:
        raw["sampler"] = name
    if not raw:
        raise MetadataError("malformed", "The Fooocus parameters in this image hold nothing Darkroom can use.")
    return finish("fooocus", raw, warnings, model_name=data.get("base_model", ""), model_hash=data.get("base_model_hash", ""))


# -- InvokeAI -------------------------------------------------------------------------------------------------
def _invoke_sampler(value: Any, warnings: list[str]) -> str | None:
    if not isinstance(value, str):
        return None
    name = samplers.from_alias(value)
    if name is None:
        warnings.append(f"Sampler {value[:60]!r} is not available in Darkroom; the current sampler is kept.")
    return name


def parse_invokeai(text: str) -> ImageParameters:
    data = load_json(text, "InvokeAI parameters")
    if not isinstance(data, dict):
        raise MetadataError("malformed", "The InvokeAI parameters in this image are damaged.")
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    for key, name in (("positive_prompt", "prompt"), ("negative_prompt", "negative_prompt"), ("seed", "seed"),
                      ("steps", "steps"), ("cfg_scale", "cfg"), ("width", "width"), ("height", "height")):
        if key in data:
            raw[name] = data[key]
    if "scheduler" in data:
        name = _invoke_sampler(data["scheduler"], warnings)
        if name:
            raw["sampler"] = name
    model = data.get("model")
    model_name = model_hash = ""
    if isinstance(model, dict):
        for k in ("name", "model_name"):
            if isinstance(model.get(k), str):
                model_name = model[k]
                break
        if isinstance(model.get("hash"), str):
            model_hash = model["hash"]
    elif isinstance(model, str):
        model_name = model
    if not raw:
        raise MetadataError("malformed", "The InvokeAI parameters in this image hold nothing Darkroom can use.")
    return finish("invokeai", raw, warnings, model_name=model_name, model_hash=model_hash,
                   extra={k: data[k] for k in ("app_version", "generation_mode") if k in data})


def parse_invokeai_legacy(text: str) -> ImageParameters:
    """InvokeAI 2's ``sd-metadata`` chunk."""
    data = load_json(text, "InvokeAI parameters")
    image = data.get("image") if isinstance(data, dict) else None
    if not isinstance(image, dict):
        raise MetadataError("malformed", "The InvokeAI parameters in this image are damaged.")
    warnings: list[str] = []
    raw: dict[str, Any] = {}
    prompt = image.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
        prompt = prompt[0].get("prompt")
    if isinstance(prompt, str):
        # InvokeAI 2 kept the negative prompt in [brackets] inside the prompt.
        raw["prompt"] = prompt
    for key, name in (("seed", "seed"), ("steps", "steps"), ("cfg_scale", "cfg"), ("width", "width"), ("height", "height")):
        if key in image:
            raw[name] = image[key]
    if "sampler" in image:
        name = _invoke_sampler(image["sampler"], warnings)
        if name:
            raw["sampler"] = name
    if not raw:
        raise MetadataError("malformed", "The InvokeAI parameters in this image hold nothing Darkroom can use.")
    return finish("invokeai", raw, warnings, model_name=data.get("model_weights", "") if isinstance(data, dict) else "")


# -- ComfyUI ----------------------------------------------------------------------------------------------------
_SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_TEXT_KEYS = ("text", "text_g", "prompt", "string", "value", "text_l", "positive", "wildcard_text", "populated_text")


class _Graph:
    """A ComfyUI API graph: {node id: {"class_type": str, "inputs": {name: value or [node id, output]}}}."""

    def __init__(self, data: dict):
        self.nodes: dict[str, dict] = {}
        for k, v in list(data.items())[:10_000]:
            if isinstance(v, dict):
                inputs = v.get("inputs")
                self.nodes[str(k)] = {
                    "class_type": v.get("class_type") if isinstance(v.get("class_type"), str) else "",
                    "inputs": inputs if isinstance(inputs, dict) else {},
                }
        self.visits = 0

    @staticmethod
    def link(value: Any) -> str | None:
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and not isinstance(value[0], bool):
            return str(value[0])
        return None

    def find(self, start: Any, keys: Iterable[str], want: type | tuple[type, ...], follow_all: bool = True) -> Any:
        """Breadth-first from the node ``start`` links to, the first input named in ``keys`` holding a ``want``."""
        keys = tuple(keys)
        self.visits = 0
        first = self.link(start)
        if first is None:
            return start if isinstance(start, want) and not isinstance(start, bool) else None
        queue, seen = [first], {first}
        while queue and self.visits < MAX_GRAPH_VISITS:
            self.visits += 1
            node = self.nodes.get(queue.pop(0))
            if node is None:
                continue
            inputs = node["inputs"]
            for key in keys:
                if key in inputs:
                    v = inputs[key]
                    if isinstance(v, want) and not isinstance(v, bool):
                        return v
                    target = self.link(v)
                    if target is not None and target not in seen:
                        seen.add(target)
                        queue.insert(0, target)  # a value fed from another node: look there first
            if follow_all:
                for v in inputs.values():
                    target = self.link(v)
                    if target is not None and target not in seen:
                        seen.add(target)
                        queue.append(target)
        return None

    def class_of(self, value: Any) -> str:
        target = self.link(value)
        node = self.nodes.get(target) if target is not None else None
        return node["class_type"] if node else ""


def parse_comfyui(text: str) -> ImageParameters:
    data = load_json(text, "ComfyUI parameters")
    if not isinstance(data, dict):
        raise MetadataError("malformed", "The ComfyUI graph in this image is damaged.")
    graph = _Graph(data)
    samplers = [(nid, n) for nid, n in graph.nodes.items() if n["class_type"] in _SAMPLER_CLASSES]
    if not samplers:
        samplers = [
            (nid, n) for nid, n in graph.nodes.items()
            if any(k in n["inputs"] for k in ("seed", "noise_seed")) and "positive" in n["inputs"]
        ]
    if not samplers:
        raise MetadataError("malformed", "The ComfyUI graph in this image has no sampler Darkroom can read.")

    def sort_key(item: tuple[str, dict]) -> tuple[int, int, str]:
        nid, node = item
        latent_class = graph.class_of(node["inputs"].get("latent_image"))
        first_pass = 0 if latent_class.startswith("Empty") else 1
        return (first_pass, int(nid) if nid.isdigit() and len(nid) < 12 else 1 << 40, nid)

    samplers.sort(key=sort_key)
    _, node = samplers[0]
    inputs = node["inputs"]
    warnings = ["ComfyUI graphs are read as well as possible; check the settings before generating."]
    if len(samplers) > 1:
        warnings.append("The graph has several samplers; the settings of the first pass were used.")
    raw: dict[str, Any] = {}
    number = (int, float)

    guider = inputs.get("guider")
    positive = inputs.get("positive", None)
    negative = inputs.get("negative", None)
    if positive is None and guider is not None:
        gid = graph.link(guider)
        gnode = graph.nodes.get(gid or "", {"inputs": {}})
        positive = gnode["inputs"].get("positive", gnode["inputs"].get("conditioning"))
        negative = gnode["inputs"].get("negative")
    if positive is not None:
        raw["prompt"] = graph.find(positive, _TEXT_KEYS, str)
    if negative is not None:
        neg = graph.find(negative, _TEXT_KEYS, str)
        if neg is not None:
            raw["negative_prompt"] = neg
    seed = graph.find(inputs.get("seed", inputs.get("noise_seed", inputs.get("noise"))), ("seed", "noise_seed", "value"), number)
    if seed is not None:
        raw["seed"] = seed
    steps = graph.find(inputs.get("steps", inputs.get("sigmas")), ("steps", "value"), number, follow_all=False)
    if steps is not None:
        raw["steps"] = steps
    cfg = inputs.get("cfg")
    if cfg is None and guider is not None:
        cfg = graph.find(guider, ("cfg",), number, follow_all=False)
    cfg = graph.find(cfg, ("cfg", "value"), number, follow_all=False) if cfg is not None else None
    if cfg is not None:
        raw["cfg"] = cfg
    sampler_name = graph.find(inputs.get("sampler_name", inputs.get("sampler")), ("sampler_name", "value"), str, follow_all=False)
    schedule = graph.find(inputs.get("scheduler", inputs.get("sigmas")), ("scheduler", "value"), str, follow_all=False)
    if sampler_name is not None:
        name = _comfy_sampler(sampler_name, schedule, warnings)
        if name:
            raw["sampler"] = name
    latent = inputs.get("latent_image")
    if latent is not None:
        w = graph.find(latent, ("width",), number)
        h = graph.find(latent, ("height",), number)
        if w is not None and h is not None:
            raw["width"], raw["height"] = w, h
    model_name = graph.find(inputs.get("model", guider), ("ckpt_name", "unet_name", "model_name"), str) or ""
    if raw.get("prompt") is None and "seed" not in raw and "steps" not in raw:
        raise MetadataError("malformed", "The ComfyUI graph in this image holds nothing Darkroom can use.")
    raw = {k: v for k, v in raw.items() if v is not None}
    return finish("comfyui", raw, warnings, model_name=model_name)
