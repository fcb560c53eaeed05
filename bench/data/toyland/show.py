def show_world(world_dir, png_path): raise NotImplementedError
