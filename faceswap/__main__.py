from faceswap.cli import main

if __name__ == "__main__":  # spawned data workers import this module again: do not rerun the command
    main()
