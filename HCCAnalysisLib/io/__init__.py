"""Files -> images: readers by suffix (NRRD, NIfTI, MHA, DICOM series), with the checks users need."""
