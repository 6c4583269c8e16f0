def write_outputs(run):
    raise NotImplementedError
