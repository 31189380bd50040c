"""The `keras-local` command's entry point, outside the package so that it runs before TensorFlow loads.

TensorFlow writes C++ log lines to the process's standard error while it is imported (absl's pre-init
warning, the oneDNN notice, the CPU-feature notice), whatever `TF_CPP_MIN_LOG_LEVEL` says. The command
imports keras_local with standard error set aside, so that its output starts with its own lines, and
gives those lines back if the import fails. `KERAS_LOCAL_TF_LOGS=1` (or `--tf-logs`) keeps them.
"""

import os
import sys
import tempfile


def main():
    argv = [argument for argument in sys.argv[1:] if argument != "--tf-logs"]
    if argv[:1] == ["profile"]:  # before TensorFlow starts: the CPU allocator's peak statistics
        os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if os.environ.get("KERAS_LOCAL_TF_LOGS") == "1" or len(argv) < len(sys.argv) - 1:
        from keras_local import cli

        return cli.main(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        standard_error = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            from keras_local import cli, train  # noqa: F401  (everything a command imports: TensorFlow, TFDS)
        except BaseException:
            os.dup2(standard_error, 2)
            captured.seek(0)
            sys.stderr.buffer.write(captured.read())
            raise
        finally:
            os.dup2(standard_error, 2)
            os.close(standard_error)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
