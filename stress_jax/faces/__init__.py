"""Face primitives every other part of the project stands on; they import nothing else of it.

geometry  the 68-point face (iBUG / dlib order) and the eye-based similarity alignment
landmarks landmark tracks over frames (filling the frames without a face)
records   the clip record every dataset builder writes
"""
