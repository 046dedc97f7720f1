"""parmap's benchmark suite: parmap against the stdlib and its peers, on the workloads of issue 4.

Run ``python -m benchmarks`` (``--quick`` for about a minute, ``--help`` for the options).
Every measurement happens in a fresh subprocess, one per contender per round, and the
rounds are interleaved so that drift of the machine hits every contender alike::

    __main__ (options) ──> runner: for each round, workload, contender (rotated order)
                              │ python -m benchmarks._child SPEC RESULT
                              v
                            _child: contenders.<name>.start() ─> workloads.measure() ─> JSON
                              │
    report <── bars <── runner.summarise(): median/min/max, best peer, ideal
      └─> docs/benchmarks.md, docs/benchmarks.json, docs/img/bench-*.png

Modules: :mod:`.tasks` (the functions the workers run), :mod:`.workloads` (what each
workload times, its sizes and its bars), :mod:`.contenders` (one adapter per library),
:mod:`.runner` (subprocesses and rounds), :mod:`.bars` (pass/miss), :mod:`.report`
(Markdown, JSON, PNG), :mod:`.overview` (the page's plain-language summary and its table
of contenders), :mod:`.formatting` (how numbers are written) and :mod:`.scaling` (the cpu
workload from 1 to 16 workers). One-file benchmarks of single questions (``asyncio_maps``,
``shared_data``, ``inner_threads``, ``memory_map``, ...) write their own pages.
"""
