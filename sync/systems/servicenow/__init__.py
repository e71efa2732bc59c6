"""ServiceNow: records of one table, by sys_id. `SYSTEM` is what the registry loads."""

from sync.systems.servicenow.system import SYSTEM, ServiceNowSystem

__all__ = ["SYSTEM", "ServiceNowSystem"]
