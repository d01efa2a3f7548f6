from kon_ray.run import cli

cli()
