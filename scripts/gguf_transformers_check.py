"""Reference for real GGUF files: transformers loads the GGUF (it dequantizes to float32, see
`gguf_file=` in transformers' docs), then prints, per prompt, the prompt ids (GGUF tokenizer as
converted by transformers), the greedy continuation and the last-position logits, as JSON lines.

    /var/tmp/refvenv/bin/python scripts/gguf_transformers_check.py FILE.gguf N_NEW PROMPT...

Used to check `specsweep generate/logits --model FILE.gguf` on the real models (issue #3); needs
the reference venv of tests/fixtures/README.md. Runs on CPU in float32.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    path = Path(sys.argv[1])
    n_new = int(sys.argv[2])
    prompts = sys.argv[3:]
    torch.set_grad_enabled(False)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model.eval()
    for prompt in prompts:
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        logits = model(x).logits[0].float()
        out = model.generate(x, max_new_tokens=n_new, do_sample=False, eos_token_id=None,
                             pad_token_id=0, min_new_tokens=n_new)
        new = out[0, len(ids):].tolist()
        top2 = torch.topk(logits[-1], 2).values.tolist()
        print(json.dumps({"prompt": prompt, "prompt_ids": ids, "output_ids": new,
                          "last_logits": logits[-1].tolist(), "all_logits": logits.tolist(),
                          "margin": top2[0] - top2[1]}))


if __name__ == "__main__":
    main()
