"""The diff: what changed between a base model and its fine-tune — attention capture, streaming
accumulation, per-head and per-layer statistics, weight change, and the result they make."""
