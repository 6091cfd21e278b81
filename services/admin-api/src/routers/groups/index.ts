import { router } from '../../trpc/init';
import { list } from './list';
import { create } from './create';
import { update } from './update';
import { deleteGroup } from './delete';

export const groupsRouter = router({ list, create, update, delete: deleteGroup });
