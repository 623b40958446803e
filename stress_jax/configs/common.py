"""Defaults shared by every config. Each named config starts here and changes what differs.

Sections:
  data      which TFDS dataset, where, and how clips are read
  protocol  the subject-independent split into train / validation / test
  input     batching, augmentation, grain workers
  model     StressNet (see stress_jax/models/stressnet.py)
  optim     optimizer and schedule
  train     loop length, logging, checkpointing
"""

from __future__ import annotations

import ml_collections


def model_config() -> ml_collections.ConfigDict:
  """The paper's architecture: full ResNet-18 trunk through stage 3, pixels in."""
  return ml_collections.ConfigDict(
    dict(
      input_mode="pixels",  # "pixels": (B,T,112,112,3) in [0,1]; "features": (B,T,7,7,256)
      stem_width=64,
      stage_widths=(64, 128, 256),
      stage_blocks=(2, 2, 2),
      head_width=512,
      head_blocks=1,
      spatial_attention=True,
      spatial_kernel_size=7,
      # How the spatial map is applied (models/attention.py): "residual" x + a*x as in
      # the authors' code, "gate" a*x, "softmax" a softmax over cells (a*x scaled by h*w).
      spatial_attention_mode="residual",
      # What the map's conv reads: "pooled" (CBAM's channel mean and max), "channels" or
      # "deviation" (the pooled pair for the map and for its distance from the clip mean).
      spatial_attention_input="pooled",
      # Where the map acts: on the "head"'s output (the authors' code) or on the "trunk"'s
      # (the stage-3 map, i.e. the input features in feature mode) before the head mixes it.
      spatial_attention_position="head",
      temporal_attention=True,
      attention_hidden=128,
      landmark_stream=True,
      landmark_hidden=128,
      # The shape landmark deviations are taken from: the clip's "mean" or "median".
      landmark_reference="mean",
      # What every frame's stage-3 map has taken from it before the head and the spatial
      # map read it: "" nothing, or the clip's per-cell "mean" or "median" map, so the
      # image stream sees how a frame departs from the same person's other frames.
      image_reference="",
      # "subtract": the departure replaces the map; "append": the head reads both.
      image_reference_mode="subtract",
      image_stream=True,
      # A classifier per stream whose loss (train.stream_loss_weight) is added in
      # training, so each stream's attention keeps its own reason to find the cues.
      stream_heads=False,
      # With stream_heads: frame weights learn from their own stream's head only.
      detach_stream_attention=False,
      # Fusion beyond the paper's concatenation (models/fusion.py), off here: in training
      # drop one whole stream per clip with this probability; at inference average the
      # fused and the stream heads' logits (needs stream_heads).
      modality_dropout=0.0,
      combine_stream_logits=False,
      dropout_rate=0.5,
      num_classes=3,
      # compute dtype: "float32", "bfloat16" or "auto" (bfloat16 on TPU/GPU, float32 on
      # CPU; resolved when training starts). Parameters stay float32.
      dtype="float32",
      # Trunk input scaling: "fixed" (x - 0.5) / 0.25, or "imagenet" mean/std, which
      # imported torchvision/timm weights expect.
      pixel_norm="fixed",
      # Train only what follows the trunk; its BatchNorm keeps its stored statistics.
      freeze_trunk=False,
      # A torchvision/timm ResNet-18 .safetensors (or .pth, needs torch) loaded into
      # the trunk (and the head where layer4 fits) at initialisation; "" = random init.
      pretrained="",
    )
  )


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict(
    dict(
      name="stress_faces/synthetic",
      data_dir="",  # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
      manual_dir="",
      build_if_missing=True,
      task="",  # yonsei_stress only: "4class", "3class" or "binary"
      num_frames=16,
      # Synthetic datasets: SimulatorConfig overrides, e.g. "seed=7,num_subjects=20"; the
      # population is built and read under its own config name (README: populations).
      simulator="",
    )
  )
  config.protocol = ml_collections.ConfigDict(
    dict(
      kind="kfold",  # "kfold" or "loso" (leave one subject out)
      num_folds=10,
      fold=0,
      num_val_subjects=2,  # taken from the training subjects, never from the test fold
      seed=0,
    )
  )
  config.input = ml_collections.ConfigDict(
    dict(
      batch_size=16,  # global, across all devices and processes
      eval_batch_size=32,
      num_workers=0,  # grain worker processes; 0 = read in the main process
      prefetch_batches=2,
      shuffle_buffer_epochs=True,
      augment=ml_collections.ConfigDict(
        dict(flip=True, brightness=0.15, contrast=0.15, temporal_jitter=True)
      ),
    )
  )
  config.model = model_config()
  config.optim = ml_collections.ConfigDict(
    dict(
      name="adamw",  # "adamw" or "sgd" (momentum)
      learning_rate=1e-3,
      warmup_steps=100,
      end_learning_rate_factor=0.01,
      weight_decay=1e-4,
      momentum=0.9,
      clip_norm=1.0,
    )
  )
  config.train = ml_collections.ConfigDict(
    dict(
      num_epochs=30,
      num_steps=-1,  # > 0 overrides num_epochs
      log_every_steps=20,
      eval_every_steps=-1,  # -1 = once per epoch
      checkpoint_every_steps=200,
      keep_checkpoints=3,
      async_checkpoints=True,
      progress_bar=True,
      # "cross_entropy", or "triplet": the authors' objective (stress_jax/objectives.py),
      # cross-entropy of (anchor, positive, negative) clips plus an embedding hinge.
      # batch_size then counts triplets, so a step sees 3 x batch_size clips.
      objective="cross_entropy",
      triplet_margin=2.0,
      triplet_weight=1.0,
      # Weight of the per-stream cross-entropies (read when model.stream_heads is on),
      # added to the fused classifier's.
      stream_loss_weight=0.5,
      # Which checkpoint the run reports (summary.json, and what evaluate/export/predict
      # read by default): "best" on the validation subjects' macro-F1, or "last". It
      # changes no training step: a finished run asked for the other one is evaluated
      # again, not retrained (stress_jax/provenance.py EVALUATION_ONLY).
      report_checkpoint="best",
    )
  )
  return config


def video_clips_config(name: str, preprocess) -> ml_collections.ConfigDict:
  """base_config() for dataset `name`: face clips cut from recorded videos by the face
  pipeline `preprocess` (a PreprocessConfig), with the training such recordings share."""
  config = base_config()
  config.data.name = name
  config.data.num_frames = preprocess.num_frames
  # The settings the build ran with, for tools that run the same pipeline on new videos.
  config.preprocess = ml_collections.ConfigDict(preprocess.to_dict())
  config.model.dropout_rate = 0.5
  config.input.batch_size = 16
  config.optim.learning_rate = 1e-3
  config.train.num_epochs = 20
  return config
