export { fleetRollout } from './rollout.js';
export { hostMaintenance } from './host-maintenance.js';
