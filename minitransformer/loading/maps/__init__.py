"""One weight-name map per model family: HF checkpoint names and layouts <-> ours."""
