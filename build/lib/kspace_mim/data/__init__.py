"""fastMRI data: reading volumes, masks, transforms, the DataModule, the synthesizer."""
