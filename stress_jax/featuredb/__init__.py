"""Feature-map databases: folders of per-frame ResNet stage-3 maps, as the paper released.

  layout   the folder layout, stems, database.json, scanning into recordings
  npy      header checks and reading of one frame file
  clips    clip planning and reading (+ landmarks), the rules of every build
  beam     the same steps as Apache Beam FlatMaps, and report merging
  builder  the TFDS builder base shared by tfds_builders/feature_maps and yonsei_stress
  yonsei   the Yonsei Stress Image Database's folder names and tasks
  trunk    a trunk from a training workdir or a pretrained file, run over pixel clips
  write    the CLI that writes a database from a pixel dataset or a video manifest

See docs/feature_database.md.
"""
