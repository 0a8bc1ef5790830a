from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def plan_members(seed: int, members: int, combine: str, run_key: str, tracking_uri: str,
                 experiment: str) -> list[dict]:
    """Each member's seed and MLflow run key, for the loop over members (``members`` > 1)."""
    from dec_lib.steps import TrackingContext
    from dec_lib.steps import plan_members as run_plan_members

    return run_plan_members(seed, members, TrackingContext(run_key, tracking_uri, experiment),
                            combine=combine)
