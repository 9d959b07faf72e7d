"""Programs the GPU check runs in a new interpreter (python <file> ARGS): the probe of the machine,
the extension's load check and the image-folder generator. Each imports what the machine has (torch,
numpy, PIL); the check itself imports none of them."""
