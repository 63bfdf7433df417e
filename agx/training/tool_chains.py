"""Synthetic multi-tool requests over a typed tool catalogue (issue #15's `delta_mix --chains N`).

The v2 adapter plans 47 of TaskBench multimedia's 76 multi-tool held-out requests as one task,
and TaskBench has only 176 multi-tool train records. A typed catalogue (each tool's input and
output types, TaskBench's `tool_desc.json`) says which tools can follow which: a random walk over
"output type of A is an input type of B" gives a chain of tools as long as we like, and a
request for it can be written from one hand-written clause per tool ("transcribe {obj}"), each
later clause referring to the previous step's output ("the audio"). The result is a
TaskBench-shaped sample (instruction, task_nodes with `<node-j>` references, task_links,
task_steps), so `taskbench.sample_to_plan` and the mix's prompt code treat it like the real ones.

The clauses are ours, written per tool of the multimedia domain (`CLAUSES`); a tool without one
gets a clause made from its description ("Transcribes speech..." -> "transcribe speech..."),
so any typed catalogue works, less naturally. No held-out request or step is read.
Deterministic: same catalogue, count and seed -> the same samples.

`single_samples` writes one-tool requests from the same clauses, framed the way users ask
("I have the recording 'interview.mp3'. Could you transcribe it?"). Trained on chains alone, the
adapter learned to go on after the right first tool: 31 of TaskBench's 52 single-tool held-out
requests got several tasks ("download this audio" -> Audio Downloader, Audio-to-Text,
Audio-to-Image). Singles in TaskBench's proportion teach it where a request ends.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Per tool: clauses with {obj} (what the step works on) and the literal extra inputs the tool
# takes besides the chained one (an effect, a second file). Two or three phrasings each, so
# the adapter maps meaning to a tool rather than one wording.
CLAUSES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "Image Downloader": (("download the image at {obj}", ()), ("fetch the picture from {obj}", ())),
    "Video Downloader": (("download the video at {obj}", ()), ("grab the video from {obj}", ())),
    "Audio Downloader": (("download the audio file at {obj}", ()), ("get the sound clip from {obj}", ())),
    "Text Downloader": (("download the text from {obj}", ()), ("pull the page text at {obj}", ())),
    "Text Search": (("search the web for {obj}", ()), ("look up {obj} online", ())),
    "Image Search": (("find images matching {obj}", ()), ("search for pictures of {obj}", ())),
    "Image Search (by Image)": (("find images similar to {obj}", ()), ("run a reverse image search with {obj}", ())),
    "URL Extractor": (("pull out the links in {obj}", ()), ("extract any URLs from {obj}", ())),
    "Video Search": (("find videos about {obj}", ()), ("search for a video on {obj}", ())),
    "Text-to-Image": (("generate an image from {obj}", ()), ("draw a picture that illustrates {obj}", ())),
    "Text-to-Video": (("make a video from {obj}", ()), ("create a short clip based on {obj}", ())),
    "Text-to-Audio": (("turn {obj} into speech", ()), ("produce an audio narration of {obj}", ())),
    "Image-to-Text": (("read the text in {obj}", ()), ("run OCR on {obj}", ())),
    "Audio-to-Text": (("transcribe {obj}", ()), ("write down what is said in {obj}", ())),
    "Video-to-Text": (("transcribe the speech in {obj}", ()), ("get a transcript of {obj}", ())),
    "Audio Noise Reduction": (("clean up the background noise in {obj}", ()), ("remove the hiss from {obj}", ())),
    "Audio Effects": (("add a reverb effect to {obj}", ("reverb",)), ("apply an echo effect to {obj}", ("echo",)),
                      ("boost the bass of {obj} with an equalizer", ("bass boost equalization",))),
    "Audio Splicer": (("join {obj} with 'example2.wav'", ("example2.wav",)),
                      ("combine {obj} and the clip 'intro.wav' into one file", ("intro.wav",))),
    "Voice Changer": (("make the voice in {obj} sound deeper", ("deeper pitch",)),
                      ("change the voice in {obj} to a female voice", ("female voice",))),
    "Text Summarizer": (("summarize {obj}", ()), ("boil {obj} down to the main points", ())),
    "Text Translator": (("translate {obj} into English", ()), ("get an English version of {obj}", ())),
    "Text Sentiment Analysis": (("tell me whether {obj} sounds positive or negative", ()),
                                ("analyze the sentiment of {obj}", ())),
    "Text Grammar Checker": (("fix the grammar in {obj}", ()), ("proofread {obj}", ())),
    "Text Simplifier": (("simplify {obj}", ()), ("rewrite {obj} in plain words", ())),
    "Text Expander": (("expand {obj} into a fuller description", ()), ("flesh out {obj}", ())),
    "Keyword Extractor": (("pick out the keywords of {obj}", ()), ("extract the key phrases from {obj}", ())),
    "Text Paraphraser": (("paraphrase {obj}", ()), ("reword {obj}", ())),
    "Article Spinner": (("spin {obj} into a unique article", ()), ("rewrite {obj} as a fresh, unique version", ())),
    "Topic Generator": (("suggest topics related to {obj}", ()), ("brainstorm ideas based on {obj}", ())),
    "Audio-to-Image": (("make a waveform picture of {obj}", ()), ("visualize {obj} as a spectrogram", ())),
    "Image-to-Video": (("make a slideshow video from {obj} and 'example2.jpg'", ("example2.jpg",)),
                       ("turn {obj} and 'cover.png' into a short slideshow", ("cover.png",))),
    "Video-to-Audio": (("extract the audio track from {obj}", ()), ("pull the sound out of {obj}", ())),
    "Video-to-Image": (("grab a still frame from {obj}", ()), ("take a snapshot image from {obj}", ())),
    "Image Stitcher": (("stitch {obj} together with 'example2.jpg'", ("example2.jpg",)),
                       ("make a panorama from {obj} and 'right.jpg'", ("right.jpg",))),
    "Image Colorizer": (("colorize {obj}", ()), ("add color to {obj}", ())),
    "Image Style Transfer": (("apply the style of 'style.jpg' to {obj}", ("style.jpg",)),
                             ("repaint {obj} in the style of 'starry.jpg'", ("starry.jpg",))),
    "Video Stabilizer": (("stabilize {obj}", ()), ("remove the shake from {obj}", ())),
    "Video Speed Changer": (("speed up {obj}", ("2x faster",)), ("slow {obj} down to half speed", ("half speed",))),
    "Video Synchronization": (("sync {obj} with the audio 'example.wav'", ("example.wav",)),
                              ("align the voiceover 'voice.mp3' with {obj}", ("voice.mp3",))),
    "Video Voiceover": (("add a voiceover to {obj} reading 'Welcome to our channel'", ("Welcome to our channel",)),
                        ("narrate {obj} with the script 'Our trip to the coast'", ("Our trip to the coast",))),
}

# What a first step works on, per input type: (the argument, how the request names it).
_FIRST_INPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "image": (("example.jpg", "'example.jpg'"), ("photo.png", "my photo 'photo.png'")),
    "video": (("example.mp4", "'example.mp4'"), ("holiday.mp4", "my video 'holiday.mp4'")),
    "audio": (("example.wav", "'example.wav'"), ("interview.mp3", "the recording 'interview.mp3'")),
    "text": (("'renewable energy'", "the phrase 'renewable energy'"), ("example.txt", "the text in 'example.txt'"),
             ("'the history of jazz'", "'the history of jazz'")),
    "url": (("https://www.example.com/file", "'https://www.example.com/file'"),),
}
# How a later step names the previous step's output, per type.
_OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "image": ("the image", "that picture", "the resulting image"),
    "video": ("the video", "that clip", "the resulting video"),
    "audio": ("the audio", "that sound", "the resulting audio"),
    "text": ("the text", "the result", "that text"),
    "url": ("the link", "those URLs"),
}
_CONNECTORS = (
    (", then ", ", and finally "),
    (", after that ", " and at the end "),
    ("; next, ", "; last, "),
    (" and then ", ", and then "),
)
_OPENERS = ("", "", "Please ", "Could you ", "Can you ", "I need you to ", "Help me ")
_LENGTHS = ((2, 2), (3, 4), (4, 3), (5, 1))  # (tools in the chain, weight): TaskBench's multi-tool mix


# One-tool framings: {named} is what the request works on, {clause} the clause with {obj} in it
# already filled ("it" where the frame named the object first).
_SINGLE_FRAMES = (
    ("{Clause}.", "named"),
    ("Could you {clause}?", "named"),
    ("I have {named}. Could you {clause}?", "it"),
    ("I'm working with {named} and I need you to {clause}.", "it"),
    ("Here is {named}; please {clause}.", "it"),
    ("Can you help me {clause}? That's all I need.", "named"),
)

# With `context`: a sentence of backstory before the ask and, half the time, what the result is
# for after it, as TaskBench's one-tool requests are written (a line about the user's day or
# project, the ask, then why they want it). s6 (bare singles) still planned 32 of the 52
# single-tool held-out requests as several tasks, most of them long, chatty ones: the backstory
# and the purpose are not steps. Per first-input type, then any type.
_BACKSTORIES: dict[str, tuple[str, ...]] = {
    "image": ("I took a few pictures on my trip last weekend.", "I've been editing images for a blog post."),
    "video": ("I filmed a clip at my cousin's wedding.", "I'm putting together a video for our club's page."),
    "audio": ("I recorded a meeting this morning.", "I've been collecting sound clips for a podcast."),
    "text": ("I've been drafting an article for our newsletter.", "I'm reading up on a subject for a class."),
    "url": ("I came across something online earlier today.", "A friend sent me a link this morning."),
}
_ANY_BACKSTORIES = ("I'm working on a project for work.", "This is for a presentation I'm giving on Friday.",
                    "I've been meaning to sort this out for a while.")
_PURPOSES = (" I'd like to share the result with my team.", " I want to keep it for reference.",
             " It's for a school project, so it doesn't need to be perfect.",
             " I'll use it in my slides later.", " Thanks, this will help me a lot.")


def _nodes(tool_desc_path: str | Path) -> list[dict[str, Any]]:
    data = json.loads(Path(tool_desc_path).read_text(encoding="utf-8"))
    return [n for n in data.get("nodes", []) if isinstance(n, dict)] if isinstance(data, dict) else []


def _types_of(nodes: list[dict[str, Any]]) -> dict[str, tuple[list[str], list[str]]]:
    out: dict[str, tuple[list[str], list[str]]] = {}
    for node in nodes:
        ins, outs = node.get("input-type"), node.get("output-type")
        if isinstance(node.get("id"), str) and isinstance(ins, list) and isinstance(outs, list) and ins and outs:
            out[node["id"]] = ([str(t).lower() for t in ins], [str(t).lower() for t in outs])
    return out


def typed_tools(tool_desc_path: str | Path) -> dict[str, tuple[list[str], list[str]]]:
    """{tool: (input types, output types)} from a TaskBench tool_desc.json, types lower-cased;
    tools without types are left out."""
    return _types_of(_nodes(tool_desc_path))


def description_clause(description: str) -> str:
    """A clause for a tool `CLAUSES` lacks, from its description, the first verb made imperative:
    "Transcribes speech from an audio file." -> "take {obj} and transcribe speech from an audio file"."""
    words = description.strip().rstrip(".").split()
    if not words:
        return "process {obj}"
    verb = words[0].lower()
    if re.search(r"(ch|sh|ss|x)es$", verb):
        verb = verb[:-2]
    elif verb.endswith("ies"):
        verb = verb[:-3] + "y"
    elif verb.endswith("s") and not verb.endswith("ss"):
        verb = verb[:-1]
    return f"take {{obj}} and {' '.join([verb, *words[1:]])}"


def _clause(rng: random.Random, tool: str, descriptions: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    options = CLAUSES.get(tool)
    if options:
        return rng.choice(options)
    return description_clause(descriptions.get(tool, tool)), ()


def _walk(rng: random.Random, types: dict[str, tuple[list[str], list[str]]], length: int) -> list[str]:
    """A chain of distinct tools, each taking the previous one's output as its first input (a
    tool's later inputs are an instruction or a second file: chaining a transcript into Voice
    Changer's instruction slot gives requests that make no sense)."""
    start_pool = sorted(types)
    chain = [rng.choice(start_pool)]
    while len(chain) < length:
        out_type = types[chain[-1]][1][0]
        nxt = sorted(t for t, (ins, _) in types.items() if ins[0] == out_type and t not in chain)
        if not nxt:
            break
        chain.append(rng.choice(nxt))
    return chain


def chain_sample(rng: random.Random, index: int, types: dict[str, tuple[list[str], list[str]]],
                 descriptions: dict[str, str]) -> dict[str, Any] | None:
    """One TaskBench-shaped sample, or None when the walk stopped before two tools."""
    length = rng.choices([n for n, _ in _LENGTHS], weights=[w for _, w in _LENGTHS])[0]
    chain = _walk(rng, types, length)
    if len(chain) < 2:
        return None
    nodes, steps, clauses = [], [], []
    for i, tool in enumerate(chain):
        ins, _ = types[tool]
        template, extras = _clause(rng, tool, descriptions)
        if i == 0:
            arg, named = _first_input(rng, ins[0])
        else:
            prev_out = types[chain[i - 1]][1][0]
            arg, named = f"<node-{i - 1}>", rng.choice(_OUTPUT_NAMES.get(prev_out, ("the result",)))
        text = template.replace("{obj}", named)
        nodes.append({"task": tool, "arguments": [arg, *extras]})
        clauses.append(text)
        steps.append(f"Step {i + 1}: {text[0].upper()}{text[1:]}")
    then, last = rng.choice(_CONNECTORS)
    body = clauses[0] + "".join(then + c for c in clauses[1:-1]) + last + clauses[-1]
    opener = rng.choice(_OPENERS)
    request = f"{opener}{body}" if opener else body[0].upper() + body[1:]
    request += "?" if opener in ("Could you ", "Can you ") else "."
    links = [{"source": a, "target": b} for a, b in zip(chain, chain[1:])]
    return {"id": f"chain-{index:04d}", "type": "chain", "n_tools": len(chain), "instruction": request,
            "task_nodes": nodes, "task_links": links, "task_steps": steps}


def single_sample(rng: random.Random, index: int, tool: str, types: dict[str, tuple[list[str], list[str]]],
                  descriptions: dict[str, str], context: bool = False) -> dict[str, Any]:
    """One TaskBench-shaped sample asking for `tool` alone (`context`: with a backstory and maybe
    a purpose around the ask)."""
    template, extras = _clause(rng, tool, descriptions)
    input_type = types[tool][0][0]
    arg, named = _first_input(rng, input_type)
    frame, obj = rng.choice(_SINGLE_FRAMES)
    # "it" only for a file ("I have 'example.txt'", not "I have 'renewable energy'") and where
    # English allows it ("flesh out it" does not).
    if obj == "it" and (not _is_file(arg) or re.search(r"\b(out|up|down|on) \{obj\}", template)):
        frame, obj = "Could you {clause}?", "named"
    clause = template.replace("{obj}", named if obj == "named" else "it")
    request = frame.replace("{named}", named).replace("{clause}", clause)
    request = request.replace("{Clause}", clause[0].upper() + clause[1:])
    if context:  # drawn last: the tool, its input and the ask are drawn as for a bare sample
        story = rng.choice(_BACKSTORIES.get(input_type, ()) + _ANY_BACKSTORIES)
        request = f"{story} {request}{rng.choice(_PURPOSES) if rng.random() < 0.5 else ''}"
    step = template.replace("{obj}", named)
    return {"id": f"single-{index:04d}", "type": "single", "n_tools": 1, "instruction": request,
            "task_nodes": [{"task": tool, "arguments": [arg, *extras]}], "task_links": [],
            "task_steps": [f"Step 1: {step[0].upper()}{step[1:]}"]}


def _first_input(rng: random.Random, input_type: str) -> tuple[str, str]:
    """(argument, how the request names it) for what a first step works on."""
    return rng.choice(_FIRST_INPUTS.get(input_type, (("example", "'example'"),)))


def _is_file(arg: str) -> bool:
    return bool(re.fullmatch(r"[\w-]+\.\w{2,4}", arg))


def single_samples(tool_desc_path: str | Path, count: int, seed: int = 0,
                   context: bool = False) -> list[dict[str, Any]]:
    """`count` seeded one-tool samples, the typed tools taken in turn (a seeded order per round)
    so each is asked about as often as the others; `context` wraps each request in a backstory
    and, half the time, a purpose (False gives the earlier samples byte for byte)."""
    order: list[str] = []

    def make(rng: random.Random, index: int, types: dict[str, tuple[list[str], list[str]]],
             descriptions: dict[str, str]) -> dict[str, Any]:
        if not order:
            order.extend(sorted(types))
            rng.shuffle(order)
        return single_sample(rng, index, order.pop(), types, descriptions, context)

    return _distinct_samples(tool_desc_path, count, f"agx-singles-{seed}", make)


def chain_samples(tool_desc_path: str | Path, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` seeded synthetic chain samples over a TaskBench domain's typed catalogue."""
    return _distinct_samples(tool_desc_path, count, f"agx-chains-{seed}", chain_sample)


def _distinct_samples(tool_desc_path: str | Path, count: int, rng_key: str,
                      make: Callable[..., dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Up to `count` samples from `make(rng, index, types, descriptions)`, a repeated request
    skipped (a small catalogue runs out of distinct ones: the tries are bounded)."""
    nodes = _nodes(tool_desc_path)
    types = _types_of(nodes)
    descriptions = {n.get("id"): n.get("desc", "") for n in nodes}
    rng = random.Random(rng_key)
    samples: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(count * 20):
        if len(samples) >= count or not types:
            break
        sample = make(rng, len(samples), types, descriptions)
        if sample is None or sample["instruction"] in seen:
            continue
        seen.add(sample["instruction"])
        samples.append(sample)
    return samples
