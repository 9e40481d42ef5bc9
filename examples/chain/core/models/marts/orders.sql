with

orders as (

    select * from {{ ref('stg_orders') }}

),

final as (

    select
        cast(order_id as integer) as order_id,
        cast(customer_id as integer) as customer_id,
        cast(order_date as date) as order_date,
        cast(amount as decimal(18, 2)) as amount,
        cast(status as varchar) as status

    from orders

)

select * from final
