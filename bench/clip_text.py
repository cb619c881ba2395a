"""A random-weight CLIP ViT-B/32 *text* tower in ONNX, built with onnx.helper (no torch),
and a `tokenizers` tokenizer for it, as the Immich layout's ``textual/`` directory.

The graph has the real model's shape and FLOPs: token embedding (49408 x 512) plus
positional embedding (77 x 512), 12 pre-LayerNorm residual blocks of width 512 with 8
heads, causal attention mask and QuickGELU MLP (4x), final LayerNorm, the features at
the end-of-text position (argmax of the token ids, as CLIP takes them: the end-of-text
token has the largest id) projected to 512. Input ``text`` int32 [N, 77] (as Immich's
export), output ``embedding`` float32 [N, 512].

The tokenizer is a WordLevel one (NFC, lowercase, split on whitespace and punctuation,
``<|startoftext|> ... <|endoftext|>`` around the words, padded with ``<|endoftext|>`` by
the loader, as Immich's tokenizer_config says): about 800 common English words
of photo queries and the numbers 0 to 2100, then filler tokens up to the real vocabulary
size, with the real special-token ids (49406, 49407). Unknown words map to ``<|unk|>``:
the weights are random, so what matters is the shape of the work, not which ids come
out. Tokenizing is microseconds either way; the real BPE tokenizer costs a little more.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from bench.onnx_graph import GraphBuilder

__all__ = ["CONTEXT", "EMBED", "VOCAB_SIZE", "make_text_b32", "query_texts"]

VOCAB_SIZE, CONTEXT, WIDTH, LAYERS, HEADS, EMBED = 49408, 77, 512, 12, 8, 512
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
UNK = "<|unk|>"

# Common English words of photo-search queries (and the glue words between them).
_WORDS = """
a an the of in on at by with without and or but not no to from for into onto over under
near behind beside between above below inside outside around through across along up
down out off after before during while is are was were be being been it its this that
these those there here some many few several one two three four five six seven eight
nine ten first second last next other another each every all both very more most less
my our your his her their me us them him he she we they you i what who where when how
photo photos picture pictures image images shot shots selfie portrait portraits
landscape landscapes view views scene scenes close closeup macro panorama panoramic
aerial drone wide angle blurry sharp bright dark dim colorful black white red orange
yellow green blue purple pink brown grey gray gold golden silver beige teal cyan
magenta pastel neon light lights shadow shadows sunset sunrise dawn dusk night day
morning evening afternoon noon midnight sun moon star stars sky skies cloud clouds
cloudy rain rainy snow snowy storm stormy fog foggy mist misty wind windy rainbow
lightning thunder weather summer winter spring autumn fall season seasons holiday
holidays christmas easter halloween thanksgiving birthday wedding party parties
celebration festival concert parade graduation anniversary vacation trip travel
journey road roads street streets avenue highway bridge bridges tunnel tower towers
building buildings house houses home apartment cabin castle church cathedral temple
mosque palace museum library school university hospital station airport harbor port
market shop store restaurant cafe bar pub hotel office factory farm barn garden
gardens park parks playground stadium beach beaches sea ocean lake lakes river
rivers stream waterfall waterfalls pond pool island islands coast shore cliff cliffs
mountain mountains hill hills valley canyon desert forest forests woods jungle field
fields meadow volcano glacier cave rock rocks stone stones sand dune dunes grass tree
trees leaf leaves flower flowers rose roses tulip tulips sunflower sunflowers plant
plants cactus moss bush wave waves water ice fire smoke city cities town village
countryside downtown skyline neighborhood suburb paris london rome tokyo berlin new
york venice amsterdam barcelona madrid lisbon prague vienna sydney dog dogs puppy
puppies cat cats kitten kittens bird birds horse horses cow cows sheep goat goats pig
pigs chicken chickens duck ducks fish fishes whale whales dolphin dolphins shark
turtle frog snake lizard butterfly butterflies bee bees spider deer fox wolf bear
bears lion lions tiger tigers elephant elephants giraffe zebra monkey monkeys rabbit
squirrel owl eagle parrot penguin penguins seagull pigeon swan animal animals pet pets
wildlife zoo aquarium man men woman women boy boys girl girls child children kid kids
baby babies toddler teenager adult adults person people family families friend
friends couple couples crowd group team mother father mom dad parents grandmother
grandfather grandma grandpa sister brother son daughter aunt uncle cousin bride
groom husband wife face faces smile smiling laughing crying sleeping eating drinking
cooking reading writing playing running walking jumping swimming surfing skiing
snowboarding skating cycling biking hiking climbing dancing singing sitting standing
lying talking hugging kissing waving posing working driving flying sailing fishing
camping picnic game games sport sports football soccer basketball baseball tennis
golf hockey rugby volleyball race racing match ball balls bike bicycle bicycles car
cars truck trucks bus buses train trains tram boat boats ship ships sailboat yacht
canoe kayak plane planes airplane airplanes helicopter motorcycle scooter tractor
taxi subway traffic food meal breakfast lunch dinner dessert cake cakes pizza burger
sandwich salad soup pasta noodles rice sushi bread cheese fruit fruits apple apples
banana oranges grapes strawberry strawberries vegetables coffee tea wine beer
cocktail juice ice cream chocolate cookie cookies pie table tables chair chairs sofa
couch bed beds desk kitchen bathroom bedroom living room window windows door doors
wall walls floor roof stairs fence gate lamp candle candles mirror painting
paintings art statue statues sculpture graffiti sign signs poster book books
newspaper letter computer laptop phone screen television camera cameras guitar piano
drum drums violin music toy toys doll teddy balloon balloons gift gifts present
presents box bag bags hat hats cap glasses sunglasses shirt dress dresses suit jacket
coat shoes boots uniform costume costumes mask umbrella flag flags clock watch ring
necklace jewelry money receipt document documents screenshot screenshots text
handwriting map maps chart diagram whiteboard snowman tent campfire fireworks
lantern christmas tree decorations lights ornament old new young big small large
little tall short long round square happy sad funny cute beautiful pretty ugly
empty crowded busy quiet calm wet dry hot cold warm cool frozen green lush tropical
ancient modern vintage rustic urban rural wild indoor indoors outdoor outdoors
underwater upside reflection reflections silhouette silhouettes bokeh blur motion
long exposure black-and-white sepia vivid foreground background
"""


def _vocab() -> dict[str, int]:
    words = list(dict.fromkeys(w for w in _WORDS.split() if w.isalpha()))
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab: dict[str, int] = {}
    for w in [*letters, *words]:
        vocab.setdefault(w, len(vocab))
    for c in (".", ",", "!", "?", "'", "-", "&", "(", ")", ":", ";", '"', "/", "#"):
        vocab.setdefault(c, len(vocab))
    for n in range(2101):  # numbers and years ("christmas 2019")
        vocab.setdefault(str(n), len(vocab))
    vocab[UNK] = len(vocab)
    i = 0
    while len(vocab) < VOCAB_SIZE - 2:  # filler pieces, as a BPE vocabulary has
        vocab.setdefault(f"<|piece{i}|>", len(vocab))
        i += 1
    vocab[SOT] = VOCAB_SIZE - 2
    vocab[EOT] = VOCAB_SIZE - 1
    return vocab


def _tokenizer_json(path: Path) -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = _vocab()
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}",
        special_tokens=[(SOT, vocab[SOT]), (EOT, vocab[EOT])],
    )
    tok.add_special_tokens([SOT, EOT])
    tok.save(str(path))


def query_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` different, realistic English photo queries (3 to about 20 words)."""
    rng = np.random.default_rng(seed)
    subjects = (
        "a dog|two cats|my daughter|a red car|the kids|an old man|a woman in a yellow dress|"
        "grandma|a sailboat|a birthday cake|people|a horse|our family|a bride and groom|"
        "a black cat"
    ).split("|")
    actions = (
        "playing|running|sitting|sleeping|swimming|eating ice cream|standing|walking|"
        "dancing|smiling|hiking|skiing"
    ).split("|")
    places = (
        "on the beach|in the snow|in a park|near the lake|in the kitchen|on a mountain|"
        "in paris|at the zoo|in the garden|on a bridge|by the river|in the forest|"
        "at a wedding|in the city at night"
    ).split("|")
    extras = (
        "||at sunset|in the rain|with fireworks|in summer|with balloons|close up|"
        "black and white photo|from the drone|"
        "with a blue sky and white clouds behind them, taken in the morning light"
    ).split("|")
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        parts = [rng.choice(subjects), rng.choice(actions), rng.choice(places),
                 rng.choice(extras)]  # fmt: skip
        if rng.random() < 0.3:
            parts = parts[:1] + parts[2:3]
        q = " ".join(str(p) for p in parts if p)
        if q in seen:
            q = f"{q} in {1990 + len(out) % 35}"
        if q in seen:
            q = f"{q} #{len(out)}"
        seen.add(q)
        out.append(q)
    return out


def make_text_b32(directory: Path, seed: int = 1) -> Path:
    """Write ``model.onnx``, ``tokenizer.json`` and ``tokenizer_config.json`` into
    ``directory`` (an Immich model's ``textual/``); return it."""
    d = Path(directory)
    rng = np.random.default_rng(seed)
    g = GraphBuilder(rng, WIDTH)
    inits, nodes = g.inits, g.nodes
    w, const, node, ln = g.w, g.const, g.node, g.ln

    x = node("Gather", [w("token_embedding", VOCAB_SIZE, WIDTH), "text"], "tok", axis=0)
    x = node("Add", [x, w("positional_embedding", CONTEXT, WIDTH, scale=0.01)], "emb")
    mask = np.triu(np.full((CONTEXT, CONTEXT), -np.inf, np.float32), k=1)  # causal
    mask_name = const("attn_mask", mask)
    x = g.blocks(x, layers=LAYERS, tokens=CONTEXT, heads=HEADS, mask=mask_name)
    x = ln(x, "ln_final")
    # The end-of-text position: argmax of the ids (EOT has the largest id; the first
    # one wins, so padding with EOT is fine), then one row per batch item.
    eot = node("ArgMax", [node("Cast", ["text"], "text_f", to=TensorProto.FLOAT)], "eot",
               axis=1, keepdims=1)  # fmt: skip
    x = node("GatherND", [x, eot], "pooled", batch_dims=1)  # [N, WIDTH]
    node("MatMul", [x, w("text_projection", WIDTH, EMBED)], "embedding")
    graph = helper.make_graph(
        nodes, "clip_text_b32_random",
        [helper.make_tensor_value_info("text", TensorProto.INT32, ["N", CONTEXT])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBED])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    d.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(d / "model.onnx"))
    _tokenizer_json(d / "tokenizer.json")
    (d / "tokenizer_config.json").write_text(json.dumps({
        "pad_token": EOT, "bos_token": SOT, "eos_token": EOT, "unk_token": UNK,
        "model_max_length": CONTEXT,
    }))  # fmt: skip
    return d
