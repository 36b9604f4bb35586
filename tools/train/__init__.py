"""The train step: the query encoder (student) learns the LLM document encoder's space from teacher vectors in the
vector cache. Stage I (``stage1``) and stage II (``stage2``), their settings (``config``) and run folders (``runs``,
``state``), the training loop (``loop``), losses, negative mining, data (``data``), the teacher and co-teacher and the
student module itself (``student``). ``python -m tools.train stage1|stage2|all|teacher|alignment|bench``."""
